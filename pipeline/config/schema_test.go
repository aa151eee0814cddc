package config_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/pushdeploy/pushdeploy/internal/configschema"
)

// compileSchema compiles the committed schema with a JSON Schema 2020-12 validator.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile("../../schema/pushdeploy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(configschema.ID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(configschema.ID)
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// asJSON reads YAML the way an editor's language server does (merge keys resolved) and
// returns it as a JSON value.
func asJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSchemaAgreesWithParser: the example passes the schema, and files the parser rejects
// for their shape are rejected by the schema too, so editors flag what Parse will.
func TestSchemaAgreesWithParser(t *testing.T) {
	s := compileSchema(t)
	example, err := os.ReadFile("../../examples/pushdeploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(asJSON(t, example)); err != nil {
		t.Errorf("the example fails the schema: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown key":      base + "    colour: blue\n",
		"wrong type":       base + "    keep: many\n",
		"below minimum":    base + "    keep: 1\n",
		"two targets":      base + "    docker: {hosts: [h], user: u}\n",
		"no target":        "app: web\nenvironments:\n  staging:\n    protected: true\n",
		"missing required": "app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [h]\n      user: deploy\n",
		"batch percent":    base + "    batches: 150%\n",
		"duration":         base + "    lock: {ttl: 30}\n",
		"enum":             base + "    hooks: {where: everywhere}\n",
		"secret value":     base + "    markers: [{url: \"https://m.example.com\", token: \"xoxb-12-ab\"}]\n",
		"bad host":         "app: web\nenvironments:\n  s:\n    ssh: {hosts: [\"a b\"], user: u, path: /p}\n",
		"bad app":          "app: Web_App\nenvironments:\n  s:\n    ssh: {hosts: [h], user: u, path: /p}\n",
	} {
		if s.Validate(asJSON(t, []byte(bad))) == nil {
			t.Errorf("%s: the schema accepts a file the parser rejects", name)
		}
		if _, err := parseString(bad); err == nil {
			t.Errorf("%s: the parser accepts it", name)
		}
	}
}
