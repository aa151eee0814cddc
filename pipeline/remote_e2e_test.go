package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// remoteMaker is the fleet's servers target with the file's logs command, plus extra
// hosts (addresses nobody may answer at).
func (f *fleet) remoteMaker(extra ...string) pipeline.TargetMaker {
	return func(_ context.Context, file *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		env, err := file.Env(name)
		if err != nil {
			return nil, err
		}
		var hc []ssh.HostConfig
		for i, h := range f.hosts {
			hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: f.appDir(i)})
		}
		for _, a := range extra {
			hc = append(hc, ssh.HostConfig{Addr: a, User: f.hosts[0].User, Path: "/srv/nowhere"})
		}
		opts := []ssh.Option{ssh.PrivateKey(s.SSHKey), ssh.KnownHosts(s.KnownHosts), ssh.ManifestCache(""), ssh.ConnectTimeout(10 * time.Second)}
		if env.SSH.Logs != "" {
			opts = append(opts, ssh.Logs(env.SSH.Logs))
		}
		return ssh.New("myapp", name, hc, opts...)
	}
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuf is a buffer a follow goroutine writes while the test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestLogsAndExecOnServers: logs runs the file's logs command and exec runs a command in
// the live release of every server, side by side, each line prefixed by its host, with
// the live release's variables and --since/--follow passed on; a host that fails does not
// stop the others, and the error says which failed and how (exit code 1, 7 unreachable).
func TestLogsAndExecOnServers(t *testing.T) {
	f := newFleet(t, 2)
	logs := `      logs: 'if [ -n "$PUSHDEPLOY_LOGS_FOLLOW" ]; then echo following; exec sleep 600; fi; cat app.log; echo "since=$PUSHDEPLOY_LOGS_SINCE release=$PUSHDEPLOY_VERSION path=$PUSHDEPLOY_PATH dir=$(pwd)"'` + "\n"
	file := f.file(t, logs)
	x := &pipeline.Environments{File: file, Secrets: f.secrets, Targets: f.remoteMaker()}
	ctx := t.Context()

	// Nothing deployed yet: each host says it has no live release.
	_, err := x.Exec(ctx, "test", []string{"true"}, io.Discard)
	var nolive *targets.NoLiveError
	if !errors.As(err, &nolive) || !strings.Contains(err.Error(), f.hosts[0].Addr+" has no live release") || !strings.Contains(err.Error(), f.hosts[1].Addr) || pipeline.ExitCode(err) != pipeline.ExitFailed {
		t.Fatalf("exec before any deploy: %v", err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.log"), []byte("line one\nline two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deploy(t, file, "alice", &pipeline.Artifact{Dir: dir}, nil); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	rep, err := x.Logs(ctx, "test", &out, pipeline.LogsSince(90*time.Second))
	if err != nil || !rep.OK || len(rep.Hosts) != 2 {
		t.Fatalf("logs: %v %+v", err, rep)
	}
	for i, h := range f.hosts {
		for _, want := range []string{
			h.Addr + " | line one\n", h.Addr + " | line two\n",
			fmt.Sprintf("%s | since=90 release=v-alice path=%s dir=%s/current\n", h.Addr, f.appDir(i), f.appDir(i)),
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, out.String())
			}
		}
	}

	// --follow streams until the caller stops; the remote command is stopped with it.
	fctx, cancel := context.WithCancel(ctx)
	var follow lockedBuf
	done := make(chan error, 1)
	go func() {
		_, err := x.Logs(fctx, "test", &follow, pipeline.LogsFollow(true))
		done <- err
	}()
	for strings.Count(follow.String(), "| following") < 2 {
		select {
		case err := <-done:
			t.Fatalf("follow ended by itself: %v\n%s", err, follow.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow stopped by the caller: %v", err)
	}

	// exec: the command's own words, in the live release, with its variables; a failing
	// command fails on each host with its exit status.
	out.Reset()
	rep, err = x.Exec(ctx, "test", []string{"sh", "-c", `echo "$PUSHDEPLOY_DEPLOYER in $(pwd)"; exit 2`}, &out)
	var re *pipeline.RemoteError
	if !errors.As(err, &re) || len(re.Failed) != 2 || pipeline.ExitCode(err) != pipeline.ExitFailed {
		t.Fatalf("exec exit 2: %v", err)
	}
	for i, h := range rep.Hosts {
		if h.ExitCode == nil || *h.ExitCode != 2 {
			t.Errorf("host %s: %+v", h.Host, h)
		}
		if want := fmt.Sprintf("%s | alice in %s/current\n", f.hosts[i].Addr, f.appDir(i)); !strings.Contains(out.String(), want) {
			t.Errorf("exec output lacks %q:\n%s", want, out.String())
		}
	}
	// Captured (w nil), one host: quoted words stay words.
	rep, err = x.Exec(ctx, "test", []string{"printf", "%s|", "a b", "$HOME"}, nil, pipeline.ExecHost(f.hosts[1].Addr))
	if err != nil || len(rep.Hosts) != 1 || rep.Hosts[0].Output != "a b|$HOME|\n" || *rep.Hosts[0].ExitCode != 0 {
		t.Errorf("exec on one host: %v %+v", err, rep)
	}
	// Both bench hosts are 127.0.0.1: without the port the host is ambiguous.
	if _, err := x.Exec(ctx, "test", []string{"true"}, nil, pipeline.ExecHost("127.0.0.1")); pipeline.ExitCode(err) != pipeline.ExitUsage || !strings.Contains(err.Error(), "matches 2 hosts") {
		t.Errorf("ambiguous --host: %v", err)
	}
	if _, err := x.Logs(ctx, "test", nil, pipeline.LogsHost("10.9.9.9")); pipeline.ExitCode(err) != pipeline.ExitUsage || !strings.Contains(err.Error(), `no host "10.9.9.9"`) {
		t.Errorf("unknown --host: %v", err)
	}

	// A host nobody answers at: the others run, the error is exit code 7.
	closed := closedAddr(t)
	x.Targets = f.remoteMaker(closed)
	out.Reset()
	rep, err = x.Exec(ctx, "test", []string{"echo", "hi"}, &out)
	if pipeline.ExitCode(err) != pipeline.ExitUnreachable || rep.OK || !rep.Hosts[2].Unreachable || !rep.Hosts[0].OK || !rep.Hosts[1].OK {
		t.Errorf("exec with a host down: %v %+v", err, rep)
	}
	if strings.Count(out.String(), " | hi\n") != 2 || !strings.Contains(err.Error(), closed) {
		t.Errorf("exec with a host down: %v\n%s", err, out.String())
	}

	// No logs command: the error says what to add, before anything runs.
	x.File = f.file(t, "")
	if _, err := x.Logs(ctx, "test", &out); err == nil || !strings.Contains(err.Error(), "logs:") || !strings.Contains(err.Error(), "journalctl") {
		t.Errorf("logs without a logs command: %v", err)
	}
}

// TestDeployRefusedBeforeTheLockWhenAHostIsDown: a deploy to a fleet with one server
// nobody answers at is refused by the preflight of the gates, before the lock: exit code
// 7, and no host changed (no application directory, no lock, no release).
func TestDeployRefusedBeforeTheLockWhenAHostIsDown(t *testing.T) {
	f := newFleet(t, 2)
	file := f.file(t, "")
	closed := closedAddr(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rec, err := pipeline.Deploy(t.Context(), pipeline.Request{
		File: file, Env: "test", Deployer: "alice", Source: pipeline.Source{Version: "v1"},
		Secrets: f.secrets, Targets: f.remoteMaker(closed), Artifact: &pipeline.Artifact{Dir: dir}, Log: &log,
	})
	t.Logf("deploy:\n%s", log.String())
	if pipeline.ExitCode(err) != pipeline.ExitUnreachable || !strings.HasPrefix(fmt.Sprint(err), "gates: ") || !strings.Contains(err.Error(), closed) {
		t.Fatalf("deploy with a host down: exit %d: %v", pipeline.ExitCode(err), err)
	}
	if stageOutcome(rec, "lock") != "" {
		t.Errorf("stages %q: the lock stage ran", stageNames(rec))
	}
	for i := range f.hosts {
		if _, err := os.Stat(f.appDir(i)); !os.IsNotExist(err) {
			t.Errorf("host %d was changed: %s exists (%v)", i, f.appDir(i), err)
		}
	}
	// The same fleet with every host up deploys: the preflight passes.
	rec, err = pipeline.Deploy(t.Context(), pipeline.Request{
		File: file, Env: "test", Deployer: "alice", Source: pipeline.Source{Version: "v1"},
		Secrets: f.secrets, Targets: f.remoteMaker(), Artifact: &pipeline.Artifact{Dir: dir}, Log: &log,
	})
	if err != nil || rec.Outcome != pipeline.OutcomeDeployed {
		t.Fatalf("deploy with every host up: %v\n%s", err, log.String())
	}
	// A deploy path the login cannot write is refused the same way, naming it.
	bad := func(ctx context.Context, fl *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		var hc []ssh.HostConfig
		for _, h := range f.hosts {
			hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: "/proc/pd-nowhere/app"})
		}
		return ssh.New("myapp", name, hc, ssh.PrivateKey(s.SSHKey), ssh.KnownHosts(s.KnownHosts), ssh.ManifestCache(""))
	}
	_, err = pipeline.Deploy(t.Context(), pipeline.Request{
		File: file, Env: "test", Deployer: "alice", Source: pipeline.Source{Version: "v2"},
		Secrets: f.secrets, Targets: bad, Artifact: &pipeline.Artifact{Dir: dir}, Log: &log,
	})
	if err == nil || !strings.HasPrefix(err.Error(), "gates: ") || !strings.Contains(err.Error(), `"/proc/pd-nowhere/app"`) || pipeline.ExitCode(err) != pipeline.ExitFailed {
		t.Errorf("deploy to an unwritable path: exit %d: %v", pipeline.ExitCode(err), err)
	}
}
