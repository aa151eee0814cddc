// Package ssh is pushdeploy's server target: files deployed over SSH to plain machines, in
// Capistrano's layout, which users know:
//
//	<path>/releases/<id>/   one directory per release
//	<path>/current          symlink to the live release, replaced atomically by rename
//	<path>/shared/          paths that survive releases, linked into each one
//	<path>/.pushdeploy/     release manifests and metadata, the deploy lock, the history
//
// A new release starts as hard links of the live one (cp -al on the host); only new and
// changed files go over SFTP, to temporary names, and are verified on the host (sha256sum)
// before they are renamed into place. A first release (nothing live to share with) gets its
// files at their paths directly, verified there: it is not complete, and never made live,
// before its metadata is written last; a large one goes as one tar stream where the host
// has GNU tar (tarstream.go), checked batch by batch as it lands. A large upload is verified
// as it lands. Nothing is written into a file the live release shares.
//
// A machine that has not hashed the artifacts before (a fresh CI runner) trusts the files
// whose size and modification time are those recorded with the first host's live release,
// as rsync does by default (trust.go; Checksum turns it off), and hashes the others while
// the host answers. The first probe of a host brings, in the same round trip, the chunks of
// its live manifest that the new tree lacks; hosts are dialled while the artifacts are
// read. Everything every kind shares (batches, health checks, rolling back, lock waiting)
// is in pipeline/; this package offers the primitives of targets.Host.
//
// A deploy opens two SSH sessions on a host: SFTP (or the tar stream), and a long-lived shell (sshconn.Shells)
// that runs every script, the lock and the history; what the user gives (the restart
// command, Run, the Updated commands) runs in a session of its own (runner.go).
//
// Hosts need what every Linux server has: a POSIX shell, GNU coreutils (cp -al, mv -T,
// sha256sum), awk, gzip, flock (util-linux, for the deploy lock) and the SFTP subsystem.
// The web server, process manager or unit serves path/current.
//
// This package is plain Go: it never imports the Dagger bindings.
package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/hoststate"
)

// HostConfig is one server. Empty fields take the target's defaults.
type HostConfig struct {
	// Addr is "host[:port]"; port 22 when omitted.
	Addr string
	// User is the SSH login. Default: the target's User.
	User string
	// Path is the application's directory on this host. Default: the target's Path.
	Path string
}

// Target is the servers of one application in one environment.
type Target struct {
	app, env string
	o        *options
	hosts    []*Host
	locker   *deployLock
	journal  hoststate.Journals

	knownMu sync.Mutex
	held    bool                     // this target holds the deploy lock
	known   map[*Host]targets.Status // known.go

	prewarm   sync.Once
	dialling  sync.WaitGroup // the dials ArtifactDigest starts
	buildMu   sync.Mutex
	mu        sync.Mutex
	manifests map[string]*Manifest // by digest: built locally or downloaded
	loading   singleflight.Group   // reads of the manifest cache, by sum
	built     map[string]*Manifest // by artifacts directory
}

var (
	_ targets.Target    = (*Target)(nil)
	_ targets.Host      = (*Host)(nil)
	_ targets.Commander = (*Host)(nil)
	_ targets.Addresser = (*Host)(nil)
	_ targets.Updater   = (*Host)(nil)
)

// New makes the target. It does not connect: hosts are dialled on first use, and an
// unreachable one is an error naming it.
func New(app, env string, hosts []HostConfig, opts ...Option) (*Target, error) {
	name := fmt.Sprintf("ssh %s/%s", app, env)
	if !safeName(app) || !safeName(env) {
		return nil, fmt.Errorf("%s: app and environment must be plain names", name)
	}
	o, err := makeOptions(app, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s: no hosts", name)
	}
	t := &Target{app: app, env: env, o: o, manifests: map[string]*Manifest{}, built: map[string]*Manifest{}}
	seen := map[string]bool{}
	for _, hc := range hosts {
		if hc.Addr == "" {
			return nil, fmt.Errorf("%s: a host has no address", name)
		}
		addr := hc.Addr
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), "22")
		}
		h := &Host{t: t, addr: addr, user: firstNonEmpty(hc.User, o.user), path: firstNonEmpty(hc.Path, o.path)}
		if err := checkDir(h.path); err != nil {
			return nil, fmt.Errorf("%s: host %s: %w", name, addr, err)
		}
		if seen[addr+h.path] {
			return nil, fmt.Errorf("%s: host %s is listed twice", name, addr)
		}
		seen[addr+h.path] = true
		t.hosts = append(t.hosts, h)
	}
	// The lock lives on the primary (first) host, as Kamal's does; the history on every one,
	// and history reads merge every host's.
	for _, h := range t.hosts {
		f, err := hoststate.NewWithRunner(h.runner, h.meta(), name+" on "+h.addr)
		if err != nil {
			return nil, err
		}
		t.journal = append(t.journal, f)
	}
	t.locker = &deployLock{Files: t.journal[0], t: t}
	return t, nil
}

func safeName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (t *Target) String() string { return fmt.Sprintf("ssh %s/%s", t.app, t.env) }

// Kind is "ssh".
func (t *Target) Kind() string { return "ssh" }

// Hosts are the servers in the order given.
func (t *Target) Hosts() []targets.Host {
	hs := make([]targets.Host, len(t.hosts))
	for i, h := range t.hosts {
		hs[i] = h
	}
	return hs
}

// SSHHosts are the servers with their concrete type.
func (t *Target) SSHHosts() []*Host { return t.hosts }

// Locker is the deploy lock, in path/.pushdeploy/lock on the first host.
func (t *Target) Locker() targets.Locker { return t.locker }

// Journal is the history, appended on every host, read from the first that answers.
func (t *Target) Journal() targets.Journal { return t.journal }

// Close closes every connection.
func (t *Target) Close() error {
	t.dialling.Wait() // a connection dialled after the close would be left open
	for _, h := range t.hosts {
		h.closeConn()
	}
	return nil
}

// ArtifactDigest is the digest a directory of artifacts deploys as: the SHA-256 of its
// manifest's chunk sums (Manifest.Digest; shared paths left out, as they are not
// deployed). It reads the directory afresh, asking the first host which files it can trust
// when this machine has not hashed them before; Plan and Prepare reuse what it read.
//
// While it hashes, the hosts are dialled (Connect, in the background): the connections the
// deploy then needs are ready when the digest is, and a dial that fails is retried, and
// reported, where the connection is used.
func (t *Target) ArtifactDigest(dir string) (string, error) {
	t.prewarm.Do(func() { t.dialling.Go(func() { t.Connect(context.Background()) }) })
	m, err := t.build(dir)
	if err != nil {
		return "", err
	}
	return m.Digest(), nil
}

// manifestOf returns the manifest of the release's artifact tree: the one read last for
// the directory when its digest is the release's, else the directory read again (it was
// never read, or changed since). Artifacts that changed after their digest was taken are
// an error: what would go out is not the release.
func (t *Target) manifestOf(r targets.Release) (*Manifest, error) {
	if r.Artifacts == "" {
		return nil, fmt.Errorf("release %q has no artifacts directory", r.ID)
	}
	abs, err := filepath.Abs(r.Artifacts)
	if err != nil {
		return nil, err
	}
	fresh := func(m *Manifest) bool {
		return m != nil && (m.Digest() == r.Digest || !strings.HasPrefix(r.Digest, "sha256:"))
	}
	last := func() *Manifest {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.built[abs]
	}
	m := last()
	if fresh(m) {
		return m, nil
	}
	// One read at a time: the hosts of a batch share it.
	t.buildMu.Lock()
	defer t.buildMu.Unlock()
	if m2 := last(); m2 != m && fresh(m2) {
		return m2, nil
	}
	if m, err = t.buildLocked(abs); err != nil {
		return nil, err
	}
	if !fresh(m) {
		return nil, fmt.Errorf("the artifacts in %s changed since their digest was taken: they are now %s, release %q says %s", r.Artifacts, m.Digest(), r.ID, r.Digest)
	}
	return m, nil
}

// build reads an artifact tree.
func (t *Target) build(dir string) (*Manifest, error) {
	if dir == "" {
		return nil, errors.New("no artifacts directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	t.buildMu.Lock()
	defer t.buildMu.Unlock()
	return t.buildLocked(abs)
}

func (t *Target) buildLocked(abs string) (*Manifest, error) {
	var cache *hashCache
	if t.o.cacheDir != "" {
		cache = loadHashCache(t.o.cacheDir, abs)
	}
	w, err := walkTree(abs, cache, append(append([]string{}, t.o.shared...), t.o.sharedFiles...)...)
	if err != nil {
		return nil, err
	}
	// Files this machine has not hashed before: the first host's live release says which
	// of them can be trusted by size and modification time (trust.go). When it cannot be
	// asked, everything is hashed; the host's error is met again where it is used.
	var live []liveChunk
	if w.worthTrust() && !t.o.checksum {
		ctx, cancel := context.WithTimeout(context.Background(), 2*t.o.timeout)
		answered := make(chan struct{})
		var got []liveChunk
		go func() {
			defer close(answered)
			got, _ = t.hosts[0].liveChunks(ctx)
		}()
		all, err := w.hashUntil(answered)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("reading artifacts in %s: %w", abs, err)
		}
		// Hashed before the host answered: the exact sums are used, nothing is trusted. The
		// question is left to finish (it is short; a script cancelled while it runs costs the
		// host a session to kill it, and the next script a new shell), and the host's next
		// script waits for it.
		if !all || t.o.awaitTrust {
			<-answered
			live = got
			cancel()
		} else {
			t.hosts[0].asked(answered)
			go func() { <-answered; cancel() }()
		}
	}
	m, err := w.manifest(live)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.built[abs] = m
	if m.complete() {
		t.manifests[m.sum()] = m
	}
	t.mu.Unlock()
	return m, nil
}

// cached returns the manifest whose text has SHA-256 sum, from memory or the disk cache.
func (t *Target) cached(sum string) *Manifest {
	t.mu.Lock()
	m := t.manifests[sum]
	t.mu.Unlock()
	if m != nil || t.o.cacheDir == "" || !isHex64(sum) {
		return m
	}
	// Every host asks at once in a fan-out: the file is read and parsed once.
	v, _, _ := t.loading.Do(sum, func() (any, error) {
		t.mu.Lock()
		m := t.manifests[sum] // remembered by a read that ended just before
		t.mu.Unlock()
		if m != nil {
			return m, nil
		}
		b, err := os.ReadFile(filepath.Join(t.o.cacheDir, sum))
		if err != nil {
			return (*Manifest)(nil), nil
		}
		m, err = ParseManifest(b)
		if err != nil || m.sum() != sum {
			return (*Manifest)(nil), nil
		}
		t.remember(m)
		return m, nil
	})
	return v.(*Manifest)
}

// remember keeps m in memory and in the disk cache (best effort).
func (t *Target) remember(m *Manifest) {
	t.mu.Lock()
	t.manifests[m.sum()] = m
	t.mu.Unlock()
	if t.o.cacheDir == "" {
		return
	}
	p := filepath.Join(t.o.cacheDir, m.sum())
	if _, err := os.Stat(p); err == nil {
		return
	}
	if os.MkdirAll(t.o.cacheDir, 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(t.o.cacheDir, ".tmp-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(m.Text())
	if cerr := tmp.Close(); err == nil && cerr == nil {
		os.Rename(tmp.Name(), p)
	}
	os.Remove(tmp.Name())
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// Connect dials every host that is not connected yet, side by side, and reports every one
// that cannot be reached.
func (t *Target) Connect(ctx context.Context) error {
	errs := make([]error, len(t.hosts))
	var wg sync.WaitGroup
	for i, h := range t.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.client(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// liveHint is the sum of the manifest this machine last staged on h, the one it believes
// live there ("" when it knows none): a probe that finds it live need not bring chunks.
func (t *Target) liveHint(h *Host) string {
	if t.o.cacheDir == "" {
		return ""
	}
	b, err := os.ReadFile(t.hintFile(h))
	if err != nil || !isHex64(strings.TrimSpace(string(b))) {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// setLiveHint remembers sum as what h is about to run (best effort).
func (t *Target) setLiveHint(h *Host, sum string) {
	if t.o.cacheDir == "" || os.MkdirAll(t.o.cacheDir, 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(t.o.cacheDir, ".tmp-live-*")
	if err != nil {
		return
	}
	_, err = tmp.WriteString(sum + "\n")
	if cerr := tmp.Close(); err == nil && cerr == nil {
		os.Rename(tmp.Name(), t.hintFile(h))
	}
	os.Remove(tmp.Name())
}

func (t *Target) hintFile(h *Host) string {
	k := sha256.Sum256([]byte(h.addr + "\x00" + h.user + "\x00" + h.path))
	return filepath.Join(t.o.cacheDir, "live-"+hex.EncodeToString(k[:12]))
}
