package pipeline

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// The sandbox: a throwaway SSH host that a deploy goes to through the normal flow (gates,
// health, record), a broken release of the same build rolled back, and the file to write
// to go real. The module starts the host as a Dagger service (SandboxHost); the CLI's
// scripts/sandbox does the same on this machine's sshd.

// Where the sandbox's application lives on its host, and what it listens on.
const (
	SandboxPath    = "/srv/app"
	SandboxAppPort = 8080
	SandboxSSHPort = 22
	// SandboxImage is the sandbox host's image: Debian, for sh, setsid and coreutils.
	SandboxImage = "debian:bookworm-slim"
)

// SandboxKeys are the sandbox host's key pair and the deploying client's.
type SandboxKeys struct {
	// HostKey and ClientKey are private keys in OpenSSH PEM.
	HostKey, ClientKey []byte
	// HostPublic is the host's public key; ClientAuthorized the client's authorized_keys line.
	HostPublic       ssh.PublicKey
	ClientAuthorized []byte
}

// NewSandboxKeys makes fresh ed25519 keys for one sandbox.
func NewSandboxKeys() (*SandboxKeys, error) {
	mk := func() ([]byte, ssh.PublicKey, error) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			return nil, nil, err
		}
		sp, err := ssh.NewPublicKey(pub)
		return pem.EncodeToMemory(block), sp, err
	}
	var k SandboxKeys
	var err error
	if k.HostKey, k.HostPublic, err = mk(); err != nil {
		return nil, fmt.Errorf("making the sandbox's host key: %w", err)
	}
	var cp ssh.PublicKey
	if k.ClientKey, cp, err = mk(); err != nil {
		return nil, fmt.Errorf("making the sandbox's client key: %w", err)
	}
	k.ClientAuthorized = ssh.MarshalAuthorizedKey(cp)
	return &k, nil
}

// KnownHosts is the known_hosts line of the sandbox host at addr ("host:port").
func (k *SandboxKeys) KnownHosts(addr string) []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, k.HostPublic) + "\n")
}

// sandboxRestart stops the release that runs and starts the live one's ./app, as a service
// manager would, listening on port ($PORT, and $HELLO_ADDR for examples/hello).
func sandboxRestart(path string, port int) string {
	return fmt.Sprintf(`d=%s; if [ -f $d/app.pid ]; then pid=$(cat $d/app.pid); kill $pid 2>/dev/null; while kill -0 $pid 2>/dev/null; do sleep 0.1; done; fi; PORT=%d HELLO_ADDR=:%d setsid nohup ./app > $d/app.log 2>&1 < /dev/null & echo $! > $d/app.pid`, path, port, port)
}

// SandboxBrokenApp is the ./app of the sandbox's broken build: it exits at start, so the
// release never answers its health check.
const SandboxBrokenApp = "#!/bin/sh\necho 'the sandbox broken build: exits at start' >&2\nexit 1\n"

// SandboxFile is the environments file of a sandbox whose host is addr ("host:port"), the
// application in path on it, listening on port, healthy when healthPath answers 200.
func SandboxFile(app, addr, path string, port int, healthPath string) (*config.File, error) {
	y := fmt.Sprintf(`app: %s
environments:
  sandbox:
    ssh:
      hosts: [%q]
      user: root
      path: %s
      restart: %q
    health:
      http: {url: "http://{{.Address}}:%d%s"}
      interval: 200ms
      retries: 15
      stable: 2s
`, app, addr, path, sandboxRestart(path, port), port, healthPath)
	return config.Parse("sandbox.yaml", []byte(y))
}

// GoRealFile is what to write into pushdeploy.yaml to deploy the same build to real servers.
func GoRealFile(app, healthPath string) string {
	return fmt.Sprintf(`app: %s
build:
  artifacts: dist/
environments:
  staging:
    ssh:
      hosts: [10.0.1.10, 10.0.1.11]    # your servers
      user: deploy
      key: env:SSH_KEY                  # dagger call --secrets env:SSH_KEY ...
      known_hosts: file:.ci/known_hosts # ssh-keyscan your hosts once, commit the file
      path: /var/www/%s
      restart: sudo systemctl restart %s
    health:
      http: {url: "http://{{.Address}}:%d%s", status: 200}
`, app, app, app, SandboxAppPort, healthPath)
}

// SandboxRun is one sandbox session.
type SandboxRun struct {
	App string
	// Addr is the SSH host ("host:port") and Keys its keys.
	Addr string
	Keys *SandboxKeys
	// Good is the build (its ./app serves HTTP on $PORT), Broken the same with
	// SandboxBrokenApp as ./app.
	Good, Broken Artifact
	Source       Source
	// Path is the application's directory on the host (default SandboxPath), AppPort what
	// it listens on (default SandboxAppPort).
	Path    string
	AppPort int
	// HealthPath is what answers 200 when the app is up. Default: /health.
	HealthPath string
	Targets    TargetMaker
	Log        io.Writer
}

// Sandbox deploys Good to the sandbox host, shows it serving, deploys Broken (rolled back by
// its failing health check), shows Good serving again and prints the file to go real. It
// fails when any of that is not what the host shows.
func Sandbox(ctx context.Context, s SandboxRun) error {
	w := orDiscard(s.Log)
	if s.Path == "" {
		s.Path = SandboxPath
	}
	if s.AppPort == 0 {
		s.AppPort = SandboxAppPort
	}
	if s.HealthPath == "" {
		s.HealthPath = "/health"
	}
	if !strings.HasPrefix(s.HealthPath, "/") {
		return fmt.Errorf("sandbox: the health path %q must start with /", s.HealthPath)
	}
	f, err := SandboxFile(s.App, s.Addr, s.Path, s.AppPort, s.HealthPath)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	sec := Secrets{SSHKey: s.Keys.ClientKey, KnownHosts: s.Keys.KnownHosts(s.Addr)}
	host, _, _ := net.SplitHostPort(s.Addr)
	probe := func() (string, error) {
		return probeHTTP(ctx, "http://"+net.JoinHostPort(host, strconv.Itoa(s.AppPort))+s.HealthPath)
	}
	deploy := func(a Artifact, version string) (*Record, error) {
		src := s.Source
		src.Version = version
		return Deploy(ctx, Request{File: f, Env: "sandbox", Source: src, Secrets: sec, Artifact: &a, Targets: s.Targets, Log: w, Deployer: "sandbox"})
	}
	fmt.Fprintf(w, "== sandbox: an SSH host at %s (a Dagger service), releases in %s\n\n== deploy the build\n", s.Addr, s.Path)
	rec, err := deploy(s.Good, "sandbox-good")
	if err != nil {
		return fmt.Errorf("sandbox: the deploy of the build failed: %w", err)
	}
	RenderRecord(w, rec)
	good, err := probe()
	if err != nil {
		return fmt.Errorf("sandbox: the build is deployed but does not serve: %w", err)
	}
	fmt.Fprintf(w, "\n== serving: GET %s -> %s\n\n== deploy a broken build (its ./app exits at start): rolled back\n", s.HealthPath, good)
	rec, err = deploy(s.Broken, "sandbox-broken")
	if err == nil {
		return fmt.Errorf("sandbox: the broken build was reported deployed")
	}
	RenderRecord(w, rec)
	if rec == nil || rec.Outcome != OutcomeRolledBack {
		return fmt.Errorf("sandbox: the broken build was not rolled back: %w", err)
	}
	again, err := probe()
	if err != nil || again != good {
		return fmt.Errorf("sandbox: after the rollback the host serves %q, not the build (%q): %v", again, good, err)
	}
	fmt.Fprintf(w, "\n== serving the build again: GET %s -> %s\n\n== to go real, put this in pushdeploy.yaml and run dagger call deploy --env staging:\n\n%s", s.HealthPath, again, GoRealFile(s.App, s.HealthPath))
	return nil
}

// probeHTTP GETs url once and returns the body's first line, or why it did not answer 200.
func probeHTTP(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if res.StatusCode != http.StatusOK {
		return line, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return line, nil
}
