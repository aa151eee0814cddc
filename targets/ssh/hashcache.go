package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// hashCache remembers the SHA-256 of the artifact files of one directory by what stat says
// of them (size, modification and change times, inode), as git's index does, so that a
// deploy of a tree where one file changed hashes that file only. A file whose times are
// within a second of when the cache was written is hashed again (it may have changed in the
// same tick the cache saw), and so is any file whose stat differs.
type hashCache struct {
	path    string
	Written int64                `json:"written"` // unix nanoseconds
	Files   map[string]hashEntry `json:"files"`
}

type hashEntry struct {
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
	Ino   uint64 `json:"ino"`
	Sum   string `json:"sum"`
}

// loadHashCache reads the cache of artifact directory abs from dir; an unreadable cache is
// an empty one.
func loadHashCache(dir, abs string) *hashCache {
	key := sha256.Sum256([]byte(abs))
	c := &hashCache{path: filepath.Join(dir, "hashes-"+hex.EncodeToString(key[:12])+".json")}
	if b, err := os.ReadFile(c.path); err == nil {
		_ = json.Unmarshal(b, c)
	}
	if c.Files == nil {
		c.Files = map[string]hashEntry{}
	}
	return c
}

func statEntry(info fs.FileInfo) (hashEntry, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return hashEntry{}, false
	}
	return hashEntry{Size: info.Size(), Mtime: info.ModTime().UnixNano(), Ctime: st.Ctim.Nano(), Ino: st.Ino}, true
}

// lookup returns the remembered sum of rel when its stat still matches and is not racy.
func (c *hashCache) lookup(rel string, info fs.FileInfo) (string, bool) {
	if c == nil {
		return "", false
	}
	now, ok := statEntry(info)
	old, found := c.Files[rel]
	if !ok || !found || old.Sum == "" {
		return "", false
	}
	racy := c.Written - int64(time.Second)
	if old.Size != now.Size || old.Mtime != now.Mtime || old.Ctime != now.Ctime || old.Ino != now.Ino || now.Mtime >= racy || now.Ctime >= racy {
		return "", false
	}
	return old.Sum, true
}

// save writes the sums of the tree just read (best effort: a cache that cannot be written
// only costs the next deploy the hashing).
func (c *hashCache) save(files map[string]hashEntry) {
	if c == nil {
		return
	}
	c.Files, c.Written = files, time.Now().UnixNano()
	b, err := json.Marshal(c)
	if err != nil || os.MkdirAll(filepath.Dir(c.path), 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".tmp-hashes-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil && cerr == nil {
		os.Rename(tmp.Name(), c.path)
	}
	os.Remove(tmp.Name())
}
