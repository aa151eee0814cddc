package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommittedLayerIsCurrent fails when the committed stand-in bindings differ from what
// the generator makes from the SDK in go.mod: run go generate after changing the SDK.
func TestCommittedLayerIsCurrent(t *testing.T) {
	dir, version, err := sdkDir()
	if err != nil {
		t.Fatal(err)
	}
	decls, err := exported(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "..", "..")
	for path, want := range map[string][]byte{
		filepath.Join(root, "internal", "dagger", "dagger.gen.go"): aliasFile(decls, version),
		filepath.Join(root, "dagger.gen.go"):                       mainFile(version),
	} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go generate .", path)
		}
	}
}

// TestEveryExportedNameIsAliased checks the layer is complete: every exported type of the
// SDK has its alias, generic ones with their type parameters.
func TestEveryExportedNameIsAliased(t *testing.T) {
	dir, version, err := sdkDir()
	if err != nil {
		t.Fatal(err)
	}
	decls, err := exported(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := string(aliasFile(decls, version))
	types := 0
	for _, d := range decls {
		var want string
		switch d.kind {
		case "type":
			types++
			want = "type " + d.name + d.tparams + " = sdk." + d.name + d.targs
		case "func", "var":
			want = "var " + d.name + " = sdk." + d.name
		case "const":
			want = "const " + d.name + " = sdk." + d.name
		case "generic":
			want = "func " + d.name + "["
		}
		if !strings.Contains(src, want) {
			t.Errorf("no %q in the alias file", want)
		}
	}
	for _, name := range []string{"Container", "Directory", "Secret", "Service", "CacheVolume", "Client", "ContainerWithExecOpts"} {
		if !strings.Contains(src, "type "+name+" = sdk."+name+"\n") {
			t.Errorf("the alias file lacks %s", name)
		}
	}
	if types < 200 {
		t.Errorf("only %d types aliased; the SDK has hundreds", types)
	}
}

// TestNoOtherFileInTheBindingsPackage: the real codegen writes internal/dagger; any other
// file there would collide with it.
func TestNoOtherFileInTheBindingsPackage(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "..", "dagger"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "dagger.gen.go" {
			t.Errorf("internal/dagger holds %s besides dagger.gen.go", e.Name())
		}
	}
}
