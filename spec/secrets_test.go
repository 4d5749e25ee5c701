package spec

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestLooksLikeSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"DB_PASSWORD":       true,
		"db_passwd":         true,
		"ClientSecret":      true,
		"GITHUB_TOKEN":      true,
		"stripe-api-key":    true,
		"STRIPE.API.KEY":    true,
		"APIKEY":            true,
		"TLS_PRIVATE_KEY":   true,
		"LOG_LEVEL":         false,
		"API_URL":           false,
		"PUBLIC_KEY_ID":     false,
		"KEYBOARD_LAYOUT":   false,
		"app.feature":       false,
		"DEMO_FAIL_HEALTH":  false,
		"PASS_THROUGH_MODE": false,
	} {
		if got := LooksLikeSecret(name); got != want {
			t.Errorf("LooksLikeSecret(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSecretNames(t *testing.T) {
	for name, want := range map[string]bool{
		"cart-db-password":        true,
		"a":                       true,
		"0":                       true,
		"shop.api-token_v2":       true,
		strings.Repeat("a", 63):   true,
		strings.Repeat("a", 64):   false,
		"":                        false,
		".hidden":                 false,
		"..":                      false,
		"-x":                      false,
		"_x":                      false,
		"a/b":                     false,
		"../etc/passwd":           false,
		"Cart":                    false,
		"has space":               false,
		"cart-db-password\n":      false,
		"cart-db-password\x00foo": false,
	} {
		if got := ValidSecretName(name); got != want {
			t.Errorf("ValidSecretName(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{
		"DB_PASSWORD": true, "_x": true, "a1": true, "1a": false, "A-B": false, "A.B": false, "": false, "A=B": false,
	} {
		if got := ValidEnvName(name); got != want {
			t.Errorf("ValidEnvName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestSecretsTravelAsNames: a spec with secrets parses into names only, and the JSON the
// workflow input is made of carries the names.
func TestSecretsTravelAsNames(t *testing.T) {
	env := mustParse(t, `
environment: x
clusters: [{name: a}]
services:
  - name: cart
    image: shop/cart
    version: "1"
    env: {LOG_LEVEL: info}
    secrets: {DB_PASSWORD: cart-db-password}
`)
	s, _ := env.Service("cart")
	if want := map[string]string{"DB_PASSWORD": "cart-db-password"}; !reflect.DeepEqual(s.Secrets, want) {
		t.Fatalf("secrets = %v, want %v", s.Secrets, want)
	}
	j, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"secrets":{"DB_PASSWORD":"cart-db-password"}`) {
		t.Fatalf("the JSON does not carry the secret's name: %s", j)
	}
}

// TestSecretErrorsDoNotEchoValues: the messages about env keys that look like secrets and
// about bad secret names never repeat what was written as a value (it may be a real secret
// pasted in the wrong place, and error messages are logged and returned by the API).
func TestSecretErrorsDoNotEchoValues(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("secrets.yaml", data)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, v := range []string{"hunter2", "sk_live_x", "ghp_x", "Web-Key", "etc/shadow", "a2345678901234"} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("the errors repeat the value %q:\n%v", v, err)
		}
	}
}

// TestValidateSecretsInCode: Validate (no positions) applies the same rules to a spec built
// in code.
func TestValidateSecretsInCode(t *testing.T) {
	env := mustParse(t, "environment: x\nclusters: [{name: a}]\nservices: [{name: web, image: shop/web, version: '1'}]\n")
	env.Services[0].Env = map[string]string{"API_TOKEN": "x"}
	env.Services[0].Secrets = map[string]string{"DB_PASSWORD": "../db"}
	err := env.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"services[0].env.API_TOKEN: API_TOKEN looks like a secret", "services[0].secrets.DB_PASSWORD: invalid secret name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestSchemaSecrets: the JSON Schema knows the patterns of secrets too.
func TestSchemaSecrets(t *testing.T) {
	s := compileSchema(t)
	base := "environment: x\nclusters: [{name: a}]\nservices: [{name: web, image: shop/web, version: '1', secrets: %s}]\n"
	for doc, ok := range map[string]bool{
		"{DB_PASSWORD: web-db-password}": true,
		"{DB_PASSWORD: Web-Password}":    false,
		"{DB_PASSWORD: ../passwd}":       false,
		"{1DB: web-db}":                  false,
		"{DB_PASSWORD: 3}":               false,
	} {
		err := s.Validate(yamlToJSONValue(t, []byte(strings.Replace(base, "%s", doc, 1))))
		if (err == nil) != ok {
			t.Errorf("secrets: %s: schema error %v, want ok=%v", doc, err, ok)
		}
	}
}
