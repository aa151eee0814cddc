package testbench

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the OpenSSH server binary the bench starts.
const SSHD = "/usr/sbin/sshd"

// SFTPServer is the sftp subsystem the bench's servers offer.
const SFTPServer = "/usr/lib/openssh/sftp-server"

// SSHHost is one OpenSSH server started for a test, on its own 127.0.0.1 port with its own
// host key, configuration and scratch directory.
type SSHHost struct {
	// Name is "ssh1", "ssh2", ... in start order.
	Name string
	// Addr is "127.0.0.1:PORT".
	Addr string
	Port int
	// Dir is a scratch directory on the host, writable by User, to deploy into.
	Dir string
	// User is the login user.
	User string
	// ClientKey is the private key (OpenSSH PEM) that User logs in with; every host of one
	// SSHHosts call accepts the same key.
	ClientKey []byte
	// KnownHosts is this host's known_hosts line ("[127.0.0.1]:PORT ssh-ed25519 AAAA...\n").
	KnownHosts []byte
	// HostKey is the host's public key.
	HostKey ssh.PublicKey
	// Started is how long the server took from exec to answering with its SSH banner.
	Started time.Duration

	// Netns is the host's network namespace, "" on loopback.
	Netns string

	home   string // the host's bench directory: config, host key, log
	ip     string // listen address in Netns
	config string
	log    string

	opts      *sshOptions
	authKeys  string
	startedAt time.Time

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// KnownHostsOf joins the known_hosts lines of hosts.
func KnownHostsOf(hosts []*SSHHost) []byte {
	var b []byte
	for _, h := range hosts {
		b = append(b, h.KnownHosts...)
	}
	return b
}

// SSHOption configures SSHHosts.
type SSHOption func(*sshOptions)

type sshOptions struct {
	user   string
	groups []string
	env    map[string]string
	extra  []string
	netns  bool
	listen string
}

// SSHListenHost makes the hosts listen on ip (an address of this machine, such as the Dagger
// engine harness's host address) instead of 127.0.0.1. Default: 127.0.0.1.
func SSHListenHost(ip string) SSHOption {
	return func(o *sshOptions) { o.listen = ip }
}

// SSHNetns puts every host in a network namespace of its own, on a bridge the test creates,
// with an address 10.200.X.(10+i) (X a /24 found free) and sshd on port 22: hosts with
// distinct addresses, for per-host URLs ({{.Address}}). Everything is removed when the test
// ends. Default: 127.0.0.1 ports.
func SSHNetns() SSHOption {
	return func(o *sshOptions) { o.netns = true }
}

// DefaultSSHUser is the login user of the bench's hosts unless SSHUser says otherwise: a
// non-root user with /bin/sh, in group docker (it reaches the bench's Docker Engine as a
// deploy user does). Not root: root's shell is bash, which reads ~/.bashrc for every SSH
// command, and on this machine image that runs pyenv init — about a second per command,
// and a lock file that a session killed mid-start leaves behind hangs every later one.
const DefaultSSHUser = "pdtest"

// DockerGroup is the group whose members may use the bench's Docker Engine socket.
const DockerGroup = "docker"

// SSHUser makes the hosts log in name (created when missing, shell /bin/sh, the password
// field "*" so that key login works without PAM), member of groups; "root" logs in root.
// Default: DefaultSSHUser in DockerGroup.
func SSHUser(name string, groups ...string) SSHOption {
	return func(o *sshOptions) { o.user, o.groups = name, groups }
}

// SSHSetEnv sets an environment variable in every session (sshd's SetEnv). Default: none.
func SSHSetEnv(key, value string) SSHOption {
	return func(o *sshOptions) {
		if o.env == nil {
			o.env = map[string]string{}
		}
		o.env[key] = value
	}
}

// SSHConfig adds lines to every host's sshd_config. Default: none.
func SSHConfig(lines ...string) SSHOption {
	return func(o *sshOptions) { o.extra = append(o.extra, lines...) }
}

// SSHHosts starts n OpenSSH servers on free 127.0.0.1 ports and stops them (and every session
// they started) when the test ends. It skips the test (Unavailable) when sshd cannot run here.
func SSHHosts(t testing.TB, n int, opts ...SSHOption) []*SSHHost {
	t.Helper()
	o := sshOptions{user: DefaultSSHUser, groups: []string{DockerGroup}}
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := os.Stat(SSHD); err != nil {
		Unavailable(t, "%s: %v (apt-get install openssh-server)", SSHD, err)
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "sshd test hosts need root (sshd must switch to the login user)")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		Unavailable(t, "creating /run/sshd: %v", err)
	}
	uid, gid := 0, 0
	if o.user != "root" {
		var err error
		if uid, gid, err = ensureUser(o.user, o.groups); err != nil {
			Unavailable(t, "creating user %q: %v", o.user, err)
		}
	}

	// Not t.TempDir: its parents are 0700, and sshd reads authorized_keys as the login user.
	base, err := os.MkdirTemp("", "pushdeploy-sshd-")
	if err != nil {
		t.Fatalf("creating sshd bench directory: %v", err)
	}
	os.Chmod(base, 0o755)

	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientKey := marshalKey(t, clientPriv)
	sshPub, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(base, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatal(err)
	}

	hosts := make([]*SSHHost, n)
	t0 := time.Now()
	for i := range hosts {
		h := &SSHHost{Name: fmt.Sprintf("ssh%d", i+1), User: o.user, ClientKey: clientKey}
		h.home = filepath.Join(base, h.Name)
		h.Dir = filepath.Join(h.home, "srv")
		for _, d := range []string{h.home, h.Dir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.Chown(h.Dir, uid, gid)
		_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
		keyFile := filepath.Join(h.home, "ssh_host_ed25519_key")
		if err := os.WriteFile(keyFile, marshalKey(t, hostPriv), 0o600); err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(hostPriv)
		if err != nil {
			t.Fatal(err)
		}
		h.HostKey = signer.PublicKey()
		h.opts, h.authKeys = &o, authKeys
		h.config = filepath.Join(h.home, "sshd_config")
		h.log = filepath.Join(h.home, "sshd.log")
		hosts[i] = h
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Kill()
		}
		os.RemoveAll(base)
	})
	if o.netns {
		if err := makeNetns(t, hosts); err != nil {
			Unavailable(t, "network namespaces: %v", err)
		}
	}

	// Start all, then wait for all: the servers come up side by side.
	for _, h := range hosts {
		if err := h.start(0); err != nil {
			t.Fatalf("starting sshd %s: %v", h.Name, err)
		}
	}
	for _, h := range hosts {
		if err := h.waitReady(); err != nil {
			t.Fatalf("starting sshd %s: %v", h.Name, err)
		}
	}
	t.Logf("testbench: %d sshd hosts started in %s (%s)", n, time.Since(t0).Round(time.Millisecond), hostsLine(hosts))
	return hosts
}

func hostsLine(hosts []*SSHHost) string {
	if len(hosts) > 0 && hosts[0].Netns != "" {
		var s []string
		for _, h := range hosts {
			s = append(s, h.Name+"="+h.Addr+" in "+h.Netns)
		}
		return strings.Join(s, " ")
	}
	var s []string
	for _, h := range hosts {
		s = append(s, h.Name+"="+h.Addr)
	}
	return strings.Join(s, " ")
}

func marshalKey(t testing.TB, k ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(b)
}

func (h *SSHHost) listenIP() string {
	if h.opts.listen != "" {
		return h.opts.listen
	}
	return "127.0.0.1"
}

// start writes the config for port (a free one when 0) and execs sshd.
func (h *SSHHost) start(port int) error {
	o, authKeys := h.opts, h.authKeys
	if h.Netns != "" {
		port = 22
	} else if port == 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(h.listenIP(), "0"))
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	h.Port = port
	if h.Netns != "" {
		h.Addr = net.JoinHostPort(h.ip, "22")
		h.KnownHosts = []byte(fmt.Sprintf("%s %s", h.ip, ssh.MarshalAuthorizedKey(h.HostKey)))
	} else {
		h.Addr = net.JoinHostPort(h.listenIP(), strconv.Itoa(port))
		h.KnownHosts = []byte(fmt.Sprintf("[%s]:%d %s", h.listenIP(), port, ssh.MarshalAuthorizedKey(h.HostKey)))
	}
	cfg := []string{
		"ListenAddress " + h.Addr,
		"HostKey " + filepath.Join(h.home, "ssh_host_ed25519_key"),
		"PidFile none",
		"AuthorizedKeysFile " + authKeys,
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp " + SFTPServer,
		"MaxStartups 200",
		"MaxSessions 100",
		"LogLevel INFO",
	}
	for k, v := range o.env {
		cfg = append(cfg, fmt.Sprintf("SetEnv %s=%q", k, v))
	}
	cfg = append(cfg, o.extra...)
	if err := os.WriteFile(h.config, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(h.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(SSHD, "-D", "-e", "-f", h.config)
	if h.Netns != "" {
		// ip netns exec execs sshd: the pid is sshd's.
		cmd = exec.Command("ip", "netns", "exec", h.Netns, SSHD, "-D", "-e", "-f", h.config)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies (a timeout's panic, a kill) takes its servers
	// along instead of leaving them listening.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	h.mu.Lock()
	h.cmd, h.exited = cmd, exited
	h.mu.Unlock()
	h.startedAt = time.Now()
	return nil
}

// waitReady waits until the server answers with an SSH banner; when it exits first (the port
// was taken meanwhile) it starts it again on another port.
func (h *SSHHost) waitReady() error {
	for attempt := 0; ; attempt++ {
		err := h.awaitBanner()
		if err == nil {
			h.Started = time.Since(h.startedAt)
			return nil
		}
		if attempt >= 5 || h.Netns != "" {
			return err
		}
		if err := h.start(0); err != nil {
			return err
		}
	}
}

// awaitBanner polls the port until it reads "SSH-2.0-" or sshd exits.
func (h *SSHHost) awaitBanner() error {
	h.mu.Lock()
	exited := h.exited
	h.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited: %s", h.logTail())
		default:
		}
		c, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
		}
		// Waiting for a process to bind: a short poll interval, bounded by the deadline.
		select {
		case <-exited:
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("sshd on %s did not answer within 20s: %s", h.Addr, h.logTail())
}

func (h *SSHHost) logTail() string {
	b, _ := os.ReadFile(h.log)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// Log returns what sshd logged so far.
func (h *SSHHost) Log() string { return h.logTail() }

// Kill stops the server with SIGKILL, with every session process it started: a host that
// vanishes mid-deploy. Connections drop without a goodbye.
func (h *SSHHost) Kill() {
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	killTree(cmd.Process.Pid)
	<-exited
}

// Restart starts the server again on the same port (killing it first if it runs) and waits
// until it answers.
func (h *SSHHost) Restart() error {
	h.Kill()
	if err := h.start(h.Port); err != nil {
		return fmt.Errorf("restarting sshd %s: %w", h.Name, err)
	}
	if err := h.awaitBanner(); err != nil {
		return fmt.Errorf("restarting sshd %s: %w", h.Name, err)
	}
	return nil
}

// killTree SIGKILLs pid and all its descendants. sshd's per-connection children call
// setsid, so a process group does not hold them: walk /proc, stop the whole tree first (a
// stopped process cannot fork or be reparented away), then kill it.
func killTree(root int) {
	stopped := map[int]bool{}
	for {
		found := false
		for _, p := range descendants(root) {
			if !stopped[p] {
				syscall.Kill(p, syscall.SIGSTOP)
				stopped[p] = true
				found = true
			}
		}
		if !found {
			break
		}
	}
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// descendants lists root and every process below it.
func descendants(root int) []int {
	children := processChildren()
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// processChildren is every process's children, by parent pid, as /proc has them now.
func processChildren() map[int][]int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	return children
}

// ensureGroup creates group g when it does not exist.
func ensureGroup(g string) error {
	if _, err := user.LookupGroup(g); err == nil {
		return nil
	}
	if out, err := exec.Command("groupadd", g).CombinedOutput(); err != nil {
		if _, lerr := user.LookupGroup(g); lerr != nil { // another test may have made it
			return fmt.Errorf("groupadd %s: %v: %s", g, err, out)
		}
	}
	return nil
}

// ensureUser creates a login user whose password field is "*" (key login without PAM; "!"
// would count as locked), and adds it to groups, creating them when missing.
func ensureUser(name string, groups []string) (uid, gid int, err error) {
	for _, g := range groups {
		if err := ensureGroup(g); err != nil {
			return 0, 0, err
		}
	}
	if _, err := user.Lookup(name); err != nil {
		args := []string{"-m", "-s", "/bin/sh", "-p", "*"}
		if len(groups) > 0 {
			args = append(args, "-G", strings.Join(groups, ","))
		}
		if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
			// Another test may have created it meanwhile.
			if _, lerr := user.Lookup(name); lerr != nil {
				return 0, 0, fmt.Errorf("useradd %s: %v: %s", name, err, out)
			}
		}
	} else if len(groups) > 0 {
		exec.Command("usermod", "-a", "-G", strings.Join(groups, ","), name).Run()
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 {
		return 0, 0, errors.New("user is root")
	}
	return uid, gid, nil
}

// CPU is the processor time the server and its finished sessions have used so far (user
// and system; a session counts once it has ended). Benchmarks use it to tell the work the
// hosts do from the client's when one machine plays many hosts.
func (h *SSHHost) CPU() time.Duration {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the name.
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, _ := strconv.ParseInt(s, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// makeNetns creates a bridge with a free 10.200.X.0/24, and per host a namespace joined to
// it by a veth pair, and removes them all when the test ends.
func makeNetns(t testing.TB, hosts []*SSHHost) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return err
	}
	used, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return err
	}
	var b [3]byte
	rand.Read(b[:])
	tag := fmt.Sprintf("%02x%02x", b[0], b[1])
	subnet := ""
	for i := 0; i < 254; i++ {
		x := (int(b[2])+i)%254 + 1
		if !strings.Contains(string(used), fmt.Sprintf(" 10.200.%d.", x)) {
			subnet = fmt.Sprintf("10.200.%d", x)
			break
		}
	}
	if subnet == "" {
		return errors.New("no free 10.200.X.0/24")
	}
	br := "pdbr" + tag
	run := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var made []string // namespaces, removed at the end
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Kill() // before their namespaces go
		}
		for _, ns := range made {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		exec.Command("ip", "link", "del", br).Run()
	})
	for _, args := range [][]string{
		{"link", "add", br, "type", "bridge"},
		{"addr", "add", subnet + ".1/24", "dev", br},
		{"link", "set", br, "up"},
	} {
		if err := run(args...); err != nil {
			return err
		}
	}
	for i, h := range hosts {
		ns := fmt.Sprintf("pd%s-%d", tag, i+1)
		veth := fmt.Sprintf("pd%sv%d", tag, i+1)
		if err := run("netns", "add", ns); err != nil {
			return err
		}
		made = append(made, ns)
		h.Netns, h.ip = ns, fmt.Sprintf("%s.%d", subnet, 10+i+1)
		for _, args := range [][]string{
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"link", "set", veth, "master", br, "up"},
			{"-n", ns, "addr", "add", h.ip + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := run(args...); err != nil {
				return err
			}
		}
	}
	return nil
}
