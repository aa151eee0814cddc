package sshconn_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func dial(t *testing.T, h *testbench.SSHHost, opts ...sshconn.Option) *sshconn.Client {
	t.Helper()
	c, err := sshconn.Dial(context.Background(), h.Addr, append([]sshconn.Option{
		sshconn.User(h.User), sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts),
	}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", h.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRun(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	out, errOut, err := c.Run(context.Background(), "echo out; echo err >&2")
	if err != nil || string(out) != "out\n" || string(errOut) != "err\n" {
		t.Fatalf("Run = %q, %q, %v; want out, err, nil", out, errOut, err)
	}
	_, _, err = c.Run(context.Background(), "echo broken >&2; exit 3")
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || ee.Output != "broken" || ee.Host != h.Addr {
		t.Fatalf("Run of a failing command = %#v; want ExitError status 3 output broken", err)
	}
	if !strings.Contains(err.Error(), h.Addr) || !strings.Contains(err.Error(), "exit status 3: broken") {
		t.Errorf("error %q does not name the host, the status and the output", err)
	}
	var stdout bytes.Buffer
	if err := c.RunCmd(context.Background(), sshconn.Cmd{Line: "tr a-z A-Z", Stdin: strings.NewReader("hello"), Stdout: &stdout}); err != nil || stdout.String() != "HELLO" {
		t.Fatalf("RunCmd with stdin = %q, %v", stdout.String(), err)
	}
}

func TestRunCancelKillsTheCommand(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	pidFile := filepath.Join(h.Dir, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Run(ctx, "echo $$ > "+sshconn.Quote(pidFile)+".tmp && mv "+sshconn.Quote(pidFile)+".tmp "+sshconn.Quote(pidFile)+" && exec sleep 600")
		errc <- err
	}()
	pid := waitPID(t, pidFile)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v; want context.Canceled", err)
	}
	waitGone(t, pid)
}

func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(5 * time.Millisecond) // polling for a file the remote command writes
	}
	t.Fatalf("%s never appeared", file)
	return 0
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling for a process to end
	}
	t.Fatalf("remote process %d still runs after the context was cancelled", pid)
}

func TestHostKeyVerification(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	h1, h2 := hosts[0], hosts[1]
	base := []sshconn.Option{sshconn.User(h1.User), sshconn.PrivateKey(h1.ClientKey)}

	// Unknown: known_hosts holds only another host.
	_, err := sshconn.Dial(context.Background(), h1.Addr, append(base, sshconn.KnownHosts(h2.KnownHosts))...)
	var he *sshconn.HostKeyError
	if !errors.As(err, &he) || he.Changed || he.KeyType != "ssh-ed25519" {
		t.Fatalf("dial with the host unknown = %v; want an unknown-key HostKeyError", err)
	}
	for _, want := range []string{h1.Addr, "ssh-ed25519", "unknown"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Changed: known_hosts holds another key for this host.
	changed := bytes.Replace(h2.KnownHosts, []byte(strconv.Itoa(h2.Port)), []byte(strconv.Itoa(h1.Port)), 1)
	_, err = sshconn.Dial(context.Background(), h1.Addr, append(base, sshconn.KnownHosts(changed))...)
	if !errors.As(err, &he) || !he.Changed {
		t.Fatalf("dial with a changed key = %v; want a changed-key HostKeyError", err)
	}
	for _, want := range []string{h1.Addr, "ssh-ed25519", "CHANGED"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// None given: refused before connecting.
	if _, err := sshconn.Dial(context.Background(), h1.Addr, base...); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("dial without known_hosts = %v; want a refusal", err)
	}
	// The loud opt-out.
	c, err := sshconn.Dial(context.Background(), h1.Addr, append(base, sshconn.InsecureIgnoreHostKeyForThrowawayHosts())...)
	if err != nil {
		t.Fatalf("dial with host key checking off: %v", err)
	}
	c.Close()
}

func TestUnreachable(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err := sshconn.Dial(context.Background(), addr, sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts), sshconn.Timeout(5*time.Second))
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial of a closed port = %v; want connection refused naming %s", err, addr)
	}
}

func TestJump(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	bastion, target := hosts[0], hosts[1]
	c := dial(t, target, sshconn.Jump(bastion.Addr, sshconn.User(bastion.User), sshconn.PrivateKey(bastion.ClientKey), sshconn.KnownHosts(bastion.KnownHosts)))
	out, err := c.Output(context.Background(), "echo via jump")
	if err != nil || string(out) != "via jump\n" {
		t.Fatalf("Output through jump = %q, %v", out, err)
	}
	// The jump host's key is verified too.
	_, err = sshconn.Dial(context.Background(), target.Addr, sshconn.PrivateKey(target.ClientKey), sshconn.KnownHosts(target.KnownHosts),
		sshconn.Jump(bastion.Addr, sshconn.PrivateKey(bastion.ClientKey), sshconn.KnownHosts(target.KnownHosts)))
	var he *sshconn.HostKeyError
	if !errors.As(err, &he) || he.Host != bastion.Addr {
		t.Fatalf("dial through a jump host with an unknown key = %v; want HostKeyError naming %s", err, bastion.Addr)
	}
}

func TestSFTPAndDialUnix(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.Create(filepath.Join(h.Dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("sent over sftp"))
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(h.Dir, "x")); string(b) != "sent over sftp" {
		t.Fatalf("file on host = %q", b)
	}

	sock := filepath.Join(h.Dir, "echo.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0o777) // the login user is not the test process's
	go func() {
		conn, err := l.Accept()
		if err == nil {
			io.Copy(conn, conn)
			conn.Close()
		}
	}()
	conn, err := c.DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the unix socket = %q, %v", buf, err)
	}
}

func TestQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "/var/www/my app", "it's", `a"b`, "$HOME", "`id`", "a\nb", "*", "-n", "x;rm -rf /", `\`, "'"} {
		q := sshconn.Quote(s)
		out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh read Quote(%q) = %s back as %q (%v)", s, q, out, err)
		}
	}
	if q := sshconn.Quote("/var/www/myapp"); q != "/var/www/myapp" {
		t.Errorf("Quote of a safe word = %s; want it unchanged", q)
	}
}

// testUser logs in a user whose shell is /bin/sh and who has no startup files: root's
// ~/.bashrc on a development machine can be slow or hang (pyenv init).
var testUser = testbench.SSHUser("pdtest")

// The pid line the package puts on stderr never shows, whatever comes before it.
func TestStderrIsPassedThrough(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	for _, line := range []string{"echo a >&2; printf b >&2", "printf x >&2", "exit 0", "head -c 10000 /dev/zero | tr '\\0' z >&2"} {
		_, errOut, err := c.Run(context.Background(), line)
		if err != nil || bytes.Contains(errOut, []byte("pushdeploy-pid")) {
			t.Fatalf("%s: stderr %q, %v", line, errOut, err)
		}
		want := map[string]int{"echo a >&2; printf b >&2": 3, "printf x >&2": 1, "exit 0": 0}[line]
		if strings.HasPrefix(line, "head") {
			want = 10000
		}
		if len(errOut) != want {
			t.Fatalf("%s: stderr %q (%d bytes); want %d bytes", line, errOut[:min(20, len(errOut))], len(errOut), want)
		}
	}
}
