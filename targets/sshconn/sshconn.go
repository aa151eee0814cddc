// Package sshconn is the SSH connection that pushdeploy's server and Docker targets share:
// dial with a context and a timeout (optionally through a jump host), verify the host key
// against a known_hosts content the user supplies (fail closed), run commands, open SFTP, and
// reach a Unix socket on the host.
//
// This package is plain Go: it never imports the Dagger bindings.
package sshconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Option configures a connection.
type Option func(*options) error

type options struct {
	user       string
	key        []byte
	passphrase []byte
	knownHosts []byte
	insecure   bool
	timeout    time.Duration
	jumpAddr   string
	jumpOpts   []Option
	jumpClient *Client
	keepAlive  time.Duration
}

// User sets the login user. Default: "root".
func User(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("user is empty")
		}
		o.user = name
		return nil
	}
}

// PrivateKey sets the client key (PEM or OpenSSH format), e.g. the plaintext of a secret.
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

// Passphrase unlocks an encrypted private key. Default: none (the key is not encrypted).
func Passphrase(p []byte) Option {
	return func(o *options) error {
		o.passphrase = p
		return nil
	}
}

// KnownHosts sets the known_hosts content (OpenSSH format) the host key is verified against.
// Required, unless InsecureIgnoreHostKeyForThrowawayHosts is given.
func KnownHosts(content []byte) Option {
	return func(o *options) error {
		o.knownHosts = content
		return nil
	}
}

// InsecureIgnoreHostKeyForThrowawayHosts accepts any host key: anyone on the path can then
// read and change what is deployed. Only for disposable hosts nobody else can reach. Default:
// off (host keys are verified against KnownHosts).
func InsecureIgnoreHostKeyForThrowawayHosts() Option {
	return func(o *options) error {
		o.insecure = true
		return nil
	}
}

// Timeout bounds connecting (TCP connect plus SSH handshake). Default: 15s.
func Timeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("connect timeout %s is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// Jump connects through a jump host (like ssh -J), dialled with its own options; the jump
// connection is closed with this one. Default: a direct connection.
func Jump(addr string, opts ...Option) Option {
	return func(o *options) error {
		if addr == "" {
			return errors.New("jump host address is empty")
		}
		o.jumpAddr, o.jumpOpts = addr, opts
		return nil
	}
}

// JumpClient connects through an already open connection, which the caller keeps and
// closes. Default: a direct connection.
func JumpClient(c *Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("jump client is nil")
		}
		o.jumpClient = c
		return nil
	}
}

// KeepAlive sends a keepalive request at this interval and closes the connection when the
// host stops answering. Default: 0 (off).
func KeepAlive(d time.Duration) Option {
	return func(o *options) error {
		o.keepAlive = d
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{user: "root", timeout: 15 * time.Second}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if len(o.key) == 0 {
		return nil, errors.New("no private key given")
	}
	if len(o.knownHosts) == 0 && !o.insecure {
		return nil, errors.New("no known_hosts content given (host keys are always verified, unless InsecureIgnoreHostKeyForThrowawayHosts is set)")
	}
	if o.jumpAddr != "" && o.jumpClient != nil {
		return nil, errors.New("both Jump and JumpClient given")
	}
	return o, nil
}

// Client is an open SSH connection to one host.
type Client struct {
	addr   string
	ssh    *ssh.Client
	jump   *Client // owned: closed with c
	stopKA chan struct{}
	once   sync.Once

	shellsOnce sync.Once
	shells     *Shells
}

// Dial connects to addr ("host:port"; port 22 when omitted) and authenticates.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	signer, err := parseKey(o.key, o.passphrase)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	cfg := &ssh.ClientConfig{
		User:    o.user,
		Auth:    []ssh.AuthMethod{ssh.PublicKeys(signer)},
		Timeout: o.timeout,
	}
	if o.insecure {
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // explicit, loudly named opt-out
	} else {
		cb, algos, err := hostKeyCallback(o.knownHosts, addr)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", addr, err)
		}
		cfg.HostKeyCallback, cfg.HostKeyAlgorithms = verifying(cb), algos
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	var jump *Client
	var conn net.Conn
	switch {
	case o.jumpAddr != "":
		jump, err = Dial(ctx, o.jumpAddr, o.jumpOpts...)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s through jump host: %w", addr, err)
		}
		conn, err = jump.ssh.DialContext(ctx, "tcp", addr)
	case o.jumpClient != nil:
		conn, err = o.jumpClient.ssh.DialContext(ctx, "tcp", addr)
	default:
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "tcp", addr); err == nil {
			conn = quickAck(conn)
		}
	}
	if err != nil {
		if jump != nil {
			jump.Close()
		}
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}

	// The handshake obeys ctx: a deadline on the connection, and closing it on cancel.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stopped := stop()
	if err != nil || !stopped {
		conn.Close()
		if jump != nil {
			jump.Close()
		}
		if err == nil {
			err = ctx.Err()
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("logging in to %s as %q: the host did not accept the key: %w", addr, o.user, err)
		}
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	conn.SetDeadline(time.Time{})
	c := &Client{addr: addr, ssh: ssh.NewClient(sc, chans, reqs), jump: jump, stopKA: make(chan struct{})}
	if o.keepAlive > 0 {
		go c.keepAlive(o.keepAlive)
	}
	return c, nil
}

func parseKey(pem, passphrase []byte) (ssh.Signer, error) {
	var s ssh.Signer
	var err error
	if len(passphrase) > 0 {
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, passphrase)
	} else {
		s, err = ssh.ParsePrivateKey(pem)
	}
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("parsing private key: it is encrypted and no passphrase was given")
		}
		// The parser's errors never quote the key.
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	return s, nil
}

// hostKeyCallback builds a known_hosts callback from content, and the host key algorithms
// to ask addr for: those of the keys known for it, so that a host offering several keys
// is checked against the one we know instead of failing on another type.
func hostKeyCallback(content []byte, addr string) (ssh.HostKeyCallback, []string, error) {
	f, err := os.CreateTemp("", "pushdeploy-known-hosts-*")
	if err != nil {
		return nil, nil, fmt.Errorf("reading known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading known_hosts: %w", err)
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, nil, fmt.Errorf("parsing known_hosts content: %s", strings.ReplaceAll(err.Error(), f.Name(), "known_hosts"))
	}
	// Ask the callback about a key nobody has: the KeyError lists the keys known for addr.
	var algos []string
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	if tcp == nil {
		tcp = &net.TCPAddr{IP: net.IPv4zero}
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, tcp, probeKey{}); errors.As(err, &ke) {
		seen := map[string]bool{}
		for _, k := range ke.Want {
			for _, a := range algorithmsFor(k.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	}
	return cb, algos, nil
}

func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// probeKey is a public key no known_hosts line can hold.
type probeKey struct{}

func (probeKey) Type() string                        { return "pushdeploy-probe" }
func (probeKey) Marshal() []byte                     { return []byte("\x00\x00\x00\x10pushdeploy-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// HostKeyError says the host's key is not the one known_hosts holds for it.
type HostKeyError struct {
	Host string
	// KeyType is the type of the key the host offered ("ssh-ed25519").
	KeyType string
	// Fingerprint is the SHA256 fingerprint of the offered key.
	Fingerprint string
	// Changed is true when known_hosts holds another key for the host, false when it holds
	// none.
	Changed bool
	// Known lists the types of the keys known_hosts holds for the host.
	Known []string
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("host key of %s has CHANGED: it offered a %s key %s, known_hosts holds a different key (%s); nothing was done (if the host was rebuilt, update known_hosts)",
			e.Host, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "))
	}
	return fmt.Sprintf("host key of %s is unknown: it offered a %s key %s and known_hosts has no key for this host; nothing was done (add the host's key to known_hosts)",
		e.Host, e.KeyType, e.Fingerprint)
}

// verifying wraps a known_hosts callback so that its verdict names the host and the key
// type the host offered.
func verifying(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			he := &HostKeyError{Host: hostname, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Changed: len(ke.Want) > 0}
			for _, k := range ke.Want {
				he.Known = append(he.Known, k.Key.Type())
			}
			return he
		}
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("host key of %s (%s) is marked @revoked in known_hosts; nothing was done", hostname, key.Type())
		}
		return fmt.Errorf("verifying host key of %s (%s): %w", hostname, key.Type(), err)
	}
}
