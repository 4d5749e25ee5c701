package main

import (
	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/spec"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of deployment spec files (for editors)",
		Long: `Schema prints the JSON Schema (draft 2020-12) of a deployment spec, generated from the
spec model. Point your editor at it, e.g. with the YAML language server:
  # yaml-language-server: $schema=./slipway.schema.json
Cross-field rules (unknown clusters, dependency cycles, cluster policies) are checked by
"slipway validate", not by the schema.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := spec.JSONSchema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
