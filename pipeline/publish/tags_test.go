package publish

import (
	"slices"
	"strings"
	"testing"
)

func TestTags(t *testing.T) {
	sha := "0123456789ABCDEF0123456789abcdef01234567"
	cases := []struct {
		name   string
		meta   SourceMeta
		latest bool
		want   []string
	}{
		{"branch", SourceMeta{Commit: sha, Branch: "main"}, false,
			[]string{strings.ToLower(sha), "0123456", "main"}},
		{"latest on request", SourceMeta{Commit: sha, Branch: "main"}, true,
			[]string{strings.ToLower(sha), "0123456", "main", "latest"}},
		{"git tag", SourceMeta{Commit: sha, Branch: "refs/heads/release/1.x", Tag: "refs/tags/v1.2.3"}, false,
			[]string{strings.ToLower(sha), "0123456", "release-1.x", "v1.2.3"}},
		{"sanitized branch", SourceMeta{Commit: sha, Branch: "--feature/ÜBER wide__x.."}, false,
			[]string{strings.ToLower(sha), "0123456", "feature-BER-wide__x.."}},
		{"no commit", SourceMeta{Branch: "dev"}, false, []string{"dev"}},
		{"duplicates", SourceMeta{Branch: "latest"}, true, []string{"latest"}},
		{"nothing", SourceMeta{Branch: "///"}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Tags(c.meta, c.latest)
			if !slices.Equal(got, c.want) {
				t.Fatalf("Tags(%+v, %v) = %q, want %q", c.meta, c.latest, got, c.want)
			}
			for _, tag := range got {
				if !ValidTag(tag) {
					t.Errorf("tag %q is not valid", tag)
				}
			}
		})
	}
	long := Tags(SourceMeta{Branch: strings.Repeat("b", 300)}, false)
	if len(long) != 1 || len(long[0]) != 128 {
		t.Fatalf("long branch: %q", long)
	}
}

func TestImmutable(t *testing.T) {
	for tag, want := range map[string]bool{
		"0123456789abcdef0123456789abcdef01234567": true,
		"0123456":     true,
		"v1.2.3":      true,
		"1.2.3":       true,
		"v1.2.3-rc.1": true,
		"main":        false,
		"latest":      false,
		"feature-x":   false,
		"v1.2":        false,
		"012345":      false, // too short for a SHA
		"0123456G":    false,
	} {
		if got := Immutable(tag); got != want {
			t.Errorf("Immutable(%q) = %v, want %v", tag, got, want)
		}
	}
}
