package spec

import (
	"encoding/json"
	"fmt"

	"github.com/invopop/jsonschema"
)

//go:generate go test -run TestSchemaComments -update .

// SchemaID is the $id of the generated JSON Schema.
const SchemaID = "https://github.com/slipwayhq/slipway/spec/environment.schema.json"

// JSONSchema returns the JSON Schema (draft 2020-12) of a deployment spec, generated from
// the Go types: field descriptions come from their doc comments (schema_comments.go,
// generated), patterns and ranges from jsonschema tags and the JSONSchemaExtend methods.
// Editors use it for completion and checks; Parse stays the authority (cross-field rules
// such as unknown clusters or dependency cycles are not expressible in the schema).
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		ExpandedStruct: true,
		CommentMap:     schemaComments,
	}
	s := r.Reflect(&Environment{})
	s.ID = SchemaID
	s.Title = "Slipway deployment spec"
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the JSON Schema: %w", err)
	}
	return append(out, '\n'), nil
}

func setPattern(s *jsonschema.Schema, prop, pattern string) {
	if p, ok := s.Properties.Get(prop); ok && p != nil {
		p.Pattern = pattern
	}
}

func setItemsPattern(s *jsonschema.Schema, prop, pattern string) {
	if p, ok := s.Properties.Get(prop); ok && p != nil && p.Items != nil {
		p.Items.Pattern = pattern
	}
}

// JSONSchemaExtend adds the name pattern and the x-… extension keys to the generated schema.
func (Environment) JSONSchemaExtend(s *jsonschema.Schema) {
	setPattern(s, "environment", NamePattern)
	// Top-level x-… keys are ignored by Parse: a place for YAML anchors.
	s.PatternProperties = map[string]*jsonschema.Schema{"^x-": {}}
}

// JSONSchemaExtend adds the name and endpoint patterns to the generated schema.
func (Cluster) JSONSchemaExtend(s *jsonschema.Schema) {
	setPattern(s, "name", NamePattern)
	setPattern(s, "endpoint", `^(unix|tcp)://`)
}

// JSONSchemaExtend adds name and version patterns, and the variable and secret name
// patterns of secrets, to the generated schema.
func (Service) JSONSchemaExtend(s *jsonschema.Schema) {
	setPattern(s, "name", NamePattern)
	setPattern(s, "version", VersionPattern)
	setItemsPattern(s, "clusters", NamePattern)
	setItemsPattern(s, "depends_on", NamePattern)
	if p, ok := s.Properties.Get("secrets"); ok && p != nil {
		p.PropertyNames = &jsonschema.Schema{Pattern: EnvNamePattern}
		if p.AdditionalProperties != nil {
			p.AdditionalProperties.Pattern = SecretNamePattern
		}
	}
}

// JSONSchemaExtend adds name patterns to the generated schema.
func (LoadTest) JSONSchemaExtend(s *jsonschema.Schema) {
	setPattern(s, "name", NamePattern)
	setPattern(s, "service", NamePattern)
	setItemsPattern(s, "clusters", NamePattern)
}
