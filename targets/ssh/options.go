package ssh

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Option configures a server target.
type Option func(*options) error

type options struct {
	user        string
	key         []byte
	passphrase  []byte
	knownHosts  []byte
	insecure    bool
	jump        string
	path        string
	restart     string
	restartWait time.Duration
	shared      []string
	sharedFiles []string
	updated     []string
	updatedWait time.Duration
	logs        string
	timeout     time.Duration
	parallel    int
	cacheDir    string
	noCache     bool
	checksum    bool
	// awaitTrust: the first host's answer is used even when every file was hashed before
	// it came (tests of the size-and-mtime trade-off; see export_test.go). Default: off.
	awaitTrust bool
}

// User is the SSH login of hosts that name none. Default: "root".
func User(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("user is empty")
		}
		o.user = name
		return nil
	}
}

// PrivateKey is the SSH client key (PEM or OpenSSH format), e.g. a secret's plaintext.
// Required.
func PrivateKey(pem []byte) Option {
	return func(o *options) error {
		if len(pem) == 0 {
			return errors.New("private key is empty")
		}
		o.key = pem
		return nil
	}
}

// Passphrase unlocks an encrypted private key. Default: none.
func Passphrase(p []byte) Option {
	return func(o *options) error { o.passphrase = p; return nil }
}

// KnownHosts is the known_hosts content every host key (the jump host's too) is verified
// against. Required, unless InsecureIgnoreHostKeyForThrowawayHosts is given.
func KnownHosts(content []byte) Option {
	return func(o *options) error { o.knownHosts = content; return nil }
}

// InsecureIgnoreHostKeyForThrowawayHosts accepts any host key: anyone on the path could read
// and change what is deployed. Only for disposable hosts. Default: off.
func InsecureIgnoreHostKeyForThrowawayHosts() Option {
	return func(o *options) error { o.insecure = true; return nil }
}

// Jump connects to every host through this bastion ("host[:port]"), with the same user, key
// and known_hosts. Default: direct connections.
func Jump(addr string) Option {
	return func(o *options) error {
		if addr == "" {
			return errors.New("jump host is empty")
		}
		o.jump = addr
		return nil
	}
}

// Path is the application's directory on hosts that name none: releases go in
// path/releases, the live one is path/current. Default: /var/www/<app>.
func Path(dir string) Option {
	return func(o *options) error { o.path = dir; return nil }
}

// Restart is the shell command that makes the server pick up the release just made live,
// e.g. "pm2 startOrReload ecosystem.config.js" or "sudo systemctl restart myapp". It runs
// in path/current with the release's PUSHDEPLOY_* variables (targets.Release.Vars) and
// PUSHDEPLOY_PATH, the application's directory. Default: none.
func Restart(command string) Option {
	return func(o *options) error { o.restart = command; return nil }
}

// DefaultRestartTimeout bounds the restart command unless RestartTimeout says otherwise:
// longer than systemd's own start timeout (90s), so that "systemctl restart" fails by
// systemd's verdict first, and short enough that a hung command does not hold the lock.
const DefaultRestartTimeout = 2 * time.Minute

// RestartTimeout bounds the restart command: when it runs longer, it is killed (its whole
// process group on the host) and Activate fails, so the deploy rolls back. Default:
// DefaultRestartTimeout (2m).
func RestartTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("restart timeout %s is not positive", d)
		}
		o.restartWait = d
		return nil
	}
}

// Shared lists paths, relative to the release, that live in path/shared and are linked into
// every release (uploads, logs, .env): what the artifacts hold there is not deployed. A
// shared path missing on the host is created as a directory. Default: none.
func Shared(paths ...string) Option {
	return func(o *options) error { o.shared = append(o.shared, paths...); return nil }
}

// SharedFiles lists files, relative to the release, linked from path/shared into every
// release (a missing one is a dangling link until it is put there). Default: none.
func SharedFiles(paths ...string) Option {
	return func(o *options) error { o.sharedFiles = append(o.sharedFiles, paths...); return nil }
}

// DefaultUpdatedTimeout bounds each Updated command unless UpdatedTimeout says otherwise,
// the default of the pipeline's other hooks.
const DefaultUpdatedTimeout = 5 * time.Minute

// Updated lists shell commands run on every host inside a staged release, before it goes
// live (Capistrano's deploy:updated): "npm ci --omit=dev", asset compilation, migrations.
// Each runs in path/releases/<id> with the release's PUSHDEPLOY_* variables
// (targets.Release.Vars) and PUSHDEPLOY_PATH; a failing one fails the host before its
// switch. Default: none.
func Updated(commands ...string) Option {
	return func(o *options) error { o.updated = append(o.updated, commands...); return nil }
}

// Logs is the command that prints the application's logs on a host (Host.Logs), e.g.
// "pm2 logs myapp --nostream --lines 200" or "journalctl -u myapp --no-pager". It runs in
// path/current with the live release's PUSHDEPLOY_* variables, PUSHDEPLOY_PATH, and
// PUSHDEPLOY_LOGS_SINCE (seconds, empty for no limit) and PUSHDEPLOY_LOGS_FOLLOW ("1" when
// asked to follow, else empty) for the command to use. Default: none (Logs says what to
// add).
func Logs(command string) Option {
	return func(o *options) error { o.logs = command; return nil }
}

// UpdatedTimeout bounds each Updated command: when it runs longer, it is killed (its whole
// process group on the host) and the release is not made live. Default:
// DefaultUpdatedTimeout (5m).
func UpdatedTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("updated hook timeout %s is not positive", d)
		}
		o.updatedWait = d
		return nil
	}
}

// ConnectTimeout bounds connecting to one host. Default: 15s.
func ConnectTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("connect timeout %s is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// Parallel is how many files are uploaded to one host at a time (SFTP requests of different
// files in flight together). Default: 64.
func Parallel(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("parallel uploads %d: must be at least 1", n)
		}
		o.parallel = n
		return nil
	}
}

// ManifestCache keeps copies of release manifests in dir, so that a deploy from this machine
// need not download the live release's manifest again. Default: pushdeploy/ssh-manifests
// under the user's cache directory; "" turns the cache off (manifests stay in memory only).
func ManifestCache(dir string) Option {
	return func(o *options) error {
		o.cacheDir, o.noCache = dir, dir == ""
		return nil
	}
}

// Checksum hashes every artifact file on every deploy, as rsync --checksum compares
// contents: no file is trusted by its size and modification time matching the live
// release's (which would miss a file changed in place with its size kept and its time set
// back). Default: off (trusted, as rsync's default check).
func Checksum() Option {
	return func(o *options) error { o.checksum = true; return nil }
}

func makeOptions(app string, opts []Option) (*options, error) {
	o := &options{user: "root", path: "/var/www/" + app, timeout: 15 * time.Second, parallel: 64, restartWait: DefaultRestartTimeout, updatedWait: DefaultUpdatedTimeout}
	if d, err := os.UserCacheDir(); err == nil {
		o.cacheDir = filepath.Join(d, "pushdeploy", "ssh-manifests")
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.noCache {
		o.cacheDir = ""
	}
	if len(o.key) == 0 {
		return nil, errors.New("no SSH private key given")
	}
	if len(o.knownHosts) == 0 && !o.insecure {
		return nil, errors.New("no known_hosts given: host keys are always verified")
	}
	if err := checkDir(o.path); err != nil {
		return nil, err
	}
	for _, p := range append(append([]string{}, o.shared...), o.sharedFiles...) {
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("shared path %q: must be a clean path inside the release", p)
		}
	}
	return o, nil
}

func checkDir(dir string) error {
	if !path.IsAbs(dir) || path.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("path %q: must be a clean absolute directory other than /", dir)
	}
	return nil
}

func (o *options) conn(user string) []sshconn.Option {
	c := []sshconn.Option{sshconn.User(user), sshconn.PrivateKey(o.key), sshconn.Timeout(o.timeout), sshconn.KeepAlive(15 * time.Second)}
	if len(o.passphrase) > 0 {
		c = append(c, sshconn.Passphrase(o.passphrase))
	}
	if o.insecure {
		c = append(c, sshconn.InsecureIgnoreHostKeyForThrowawayHosts())
	} else {
		c = append(c, sshconn.KnownHosts(o.knownHosts))
	}
	return c
}

// HashesEverything says whether the target hashes every artifact file on every deploy
// (Checksum).
func (t *Target) HashesEverything() bool { return t.o.checksum }
