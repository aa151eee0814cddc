package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the commands print")

// golden compares got, with the run's own values (host addresses, directories, release
// ids, sizes) replaced by stable names, with testdata/name; -update rewrites the file.
func golden(t *testing.T, name, got string, replace map[string]string) {
	t.Helper()
	// Longest first: a directory contains the host's scratch directory.
	keys := make([]string, 0, len(replace))
	for k := range replace {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if len(keys[j]) > len(keys[i]) {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	for _, k := range keys {
		got = strings.ReplaceAll(got, k, replace[k])
	}
	got = releaseID.ReplaceAllString(got, "RELEASE")
	got = mib.ReplaceAllString(got, "N MiB")
	path := filepath.Join(testdata, name)
	if *update {
		if err := os.MkdirAll(testdata, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/pushdeploy -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./cmd/pushdeploy -run '%s' -update rewrites it)\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// testdata is the package's testdata directory, found before any test changes directory.
var testdata, _ = filepath.Abs("testdata")

var (
	releaseID = regexp.MustCompile(`\d{8}T\d{6}\.\d{3}Z`)
	mib       = regexp.MustCompile(`\d+ MiB`)
)
