package publish

import (
	"regexp"
	"strings"
)

// SourceMeta is what the tags of a published image come from.
type SourceMeta struct {
	// Commit is the full commit SHA (40 or 64 hex digits).
	Commit string
	// Branch is the branch name ("main", "feature/x", or "refs/heads/feature/x").
	Branch string
	// Tag is the git tag the commit is on ("v1.2.3" or "refs/tags/v1.2.3"); empty when none.
	Tag string
}

// ShortSHALength is how many hex digits the short-SHA tag keeps.
const ShortSHALength = 7

// maxTagLength is the longest tag a registry accepts.
const maxTagLength = 128

var (
	// validTag is the registry's tag grammar (distribution's reference.tag).
	validTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// shaTag matches a full or abbreviated commit SHA.
	shaTag = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	// versionTag matches a semantic version, with or without "v", with an optional
	// pre-release or sanitized build suffix: v1.2.3, 1.2.3, v1.2.3-rc.1, v1.2.3_build.5.
	versionTag = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-_.][0-9A-Za-z_.-]+)?$`)
	// notTagChars are the characters a tag cannot hold.
	notTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
)

// Tags returns the tags to publish for meta: the full and the short commit SHA, the branch
// name sanitized to the tag grammar ("feature/x" becomes "feature-x"), the git tag when the
// commit is on one, and "latest" only when latest is true. Empty fields give no tag;
// duplicates are dropped; order is as listed.
func Tags(meta SourceMeta, latest bool) []string {
	var tags []string
	add := func(t string) {
		if t == "" {
			return
		}
		for _, have := range tags {
			if have == t {
				return
			}
		}
		tags = append(tags, t)
	}
	if c := SanitizeTag(strings.ToLower(strings.TrimSpace(meta.Commit))); c != "" {
		add(c)
		if shaTag.MatchString(c) && len(c) > ShortSHALength {
			add(c[:ShortSHALength])
		}
	}
	add(SanitizeTag(strings.TrimPrefix(strings.TrimSpace(meta.Branch), "refs/heads/")))
	add(SanitizeTag(strings.TrimPrefix(strings.TrimSpace(meta.Tag), "refs/tags/")))
	if latest {
		add("latest")
	}
	return tags
}

// SanitizeTag maps s onto the tag grammar [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: every run of
// other characters becomes "-", leading "." and "-" are dropped, and the result is cut to 128
// characters. It returns "" when nothing is left.
func SanitizeTag(s string) string {
	s = notTagChars.ReplaceAllString(s, "-")
	s = strings.TrimLeft(s, ".-")
	if len(s) > maxTagLength {
		s = s[:maxTagLength]
	}
	s = strings.TrimRight(s, "-")
	return s
}

// ValidTag reports whether tag fits the registry's tag grammar.
func ValidTag(tag string) bool { return validTag.MatchString(tag) }

// Immutable reports whether tag names one build for good — a full or short commit SHA
// (7 to 64 lowercase hex digits) or a semantic version (v1.2.3, 1.2.3-rc.1) — so that
// Publish refuses to point it at another digest unless forced. Branch tags and "latest" move.
func Immutable(tag string) bool {
	return shaTag.MatchString(tag) || versionTag.MatchString(tag)
}
