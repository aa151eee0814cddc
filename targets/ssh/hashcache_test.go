package ssh

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHashCacheReusesUnchangedAndRehashesChanged: a file whose stat is what the cache saw
// (and not racy) keeps its remembered sum; a changed one, even of the same size, is hashed
// again.
func TestHashCacheReusesUnchangedAndRehashesChanged(t *testing.T) {
	dir, cacheDir := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"a": "aaaa", "b": "bbbb"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := buildManifest(dir, loadHashCache(cacheDir, dir)); err != nil {
		t.Fatal(err)
	}
	// As if the cache had been written well after the files changed (a later deploy), and
	// with a sum for a that only the cache knows: seeing it proves the cache was used.
	c := loadHashCache(cacheDir, dir)
	c.Written += int64(5 * time.Second)
	e := c.Files["a"]
	e.Sum = "from-the-cache"
	c.Files["a"] = e
	b, _ := json.Marshal(c)
	if err := os.WriteFile(c.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// b changes, same size.
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("BBBB"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := buildManifest(dir, loadHashCache(cacheDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hashFile(filepath.Join(dir, "b"))
	if got := m.Get("a").SHA256; got != "from-the-cache" {
		t.Errorf("unchanged a was hashed again (%s): the cache was not used", got)
	}
	if got := m.Get("b").SHA256; got != want {
		t.Errorf("changed b kept sum %s, want %s", got, want)
	}
	// Racy: just written, so nothing is trusted.
	fresh, err := buildManifest(dir, loadHashCache(cacheDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	if wantA, _ := hashFile(filepath.Join(dir, "a")); fresh.Get("a").SHA256 != wantA {
		t.Errorf("a cache written a moment ago was trusted")
	}
}
