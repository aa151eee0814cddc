package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestDaggerJSON holds the module's metadata to what `dagger develop` writes (so that the
// real codegen leaves dagger.json as it is) and to the SDK in go.mod: the module's name,
// the Go SDK, and an engine version equal to the dagger.io/dagger version go.mod requires.
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
		Source  *string  `json:"source"`
		Include []string `json:"include"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("dagger.json: %v", err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sdk := regexp.MustCompile(`(?m)^\s*(?:require\s+)?dagger\.io/dagger (v\S+)`).FindSubmatch(gomod)
	if sdk == nil {
		t.Fatal("go.mod does not require dagger.io/dagger")
	}
	if m.Name != "pushdeploy" || m.SDK.Source != "go" || m.EngineVersion != string(sdk[1]) {
		t.Errorf("dagger.json says %+v; want module pushdeploy on the go SDK at engine %s, the SDK go.mod requires", m, sdk[1])
	}
	// What a build leaves in the checkout (.gitignore's /pushdeploy, /dist, /bin) stays out
	// of the module's source: Dagger uploads it on every call, and a file there changes the
	// source's digest, which reloads the module (an 85 MB CLI binary: 52 s instead of 4 s).
	for _, x := range []string{"!pushdeploy", "!dist", "!bin"} {
		if !slices.Contains(m.Include, x) {
			t.Errorf("dagger.json's include lacks %q", x)
		}
	}
	if m.Source != nil {
		t.Errorf("dagger.json has source %q: dagger develop removes the default, so the file would change under it", *m.Source)
	}
}
