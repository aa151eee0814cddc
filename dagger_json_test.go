package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestDaggerJSON holds the module's metadata to what the stand-in bindings are generated
// for: the module's name, the Go SDK, and the engine version of the SDK in go.mod.
func TestDaggerJSON(t *testing.T) {
	b, err := os.ReadFile("dagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Name          string `json:"name"`
		EngineVersion string `json:"engineVersion"`
		SDK           struct {
			Source string `json:"source"`
		} `json:"sdk"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("dagger.json: %v", err)
	}
	gen, err := os.ReadFile("dagger.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "pushdeploy" || m.SDK.Source != "go" || !strings.Contains(string(gen), "dagger.io/dagger "+m.EngineVersion+".") {
		t.Errorf("dagger.json says %+v; want module pushdeploy on the go SDK at the engine version the bindings are generated from", m)
	}
}
