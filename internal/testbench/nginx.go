package testbench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NginxBinary is the reverse proxy the bench starts: Debian's nginx-light.
const NginxBinary = "/usr/sbin/nginx"

// Nginx is an nginx reverse proxy on a 127.0.0.1 port in front of an application's
// blue-green slots, as it would sit on a Docker host.
type Nginx struct {
	// Addr is "127.0.0.1:PORT", where it listens.
	Addr string
	// Conf is the configuration file; Upstream the file it includes inside the upstream
	// block, which a switch command rewrites before a reload.
	Conf, Upstream string
	// Dir holds its configuration, pid file and logs.
	Dir string
	// Started is how long it took to accept connections.
	Started time.Duration
}

// Reload is the shell command that makes nginx read its configuration again (it returns
// before the new workers run; the old ones finish with the old configuration).
func (n *Nginx) Reload() string { return NginxBinary + " -c " + n.Conf + " -s reload" }

// StartNginx starts nginx in front of an upstream whose servers are the lines given, e.g.
// "server 127.0.0.1:8081 max_fails=0;" and "server 127.0.0.1:8082 backup max_fails=0;". A
// request that cannot reach one server goes on to the next (proxy_next_upstream error). It
// stops when the test ends.
func StartNginx(t testing.TB, upstream ...string) *Nginx {
	t.Helper()
	if _, err := os.Stat(NginxBinary); err != nil {
		Unavailable(t, "%s: %v (apt-get install nginx-light)", NginxBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir, err := os.MkdirTemp("", "pd-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // workers run as nobody and write temp files here
	t.Cleanup(func() { os.RemoveAll(dir) })
	upFile := filepath.Join(dir, "upstream.conf")
	if err := os.WriteFile(upFile, []byte(strings.Join(upstream, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream app {
    include %[2]s;
  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://app;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }
  }
}
`, dir, upFile, addr)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(NginxBinary, "-e", filepath.Join(dir, "error.log"), "-c", confFile, "-g", "daemon off;")
	out := &dockerdOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		Unavailable(t, "starting nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful stop
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s%s", out.String(), log)
		case <-deadline:
			t.Fatalf("nginx does not accept connections on %s after 10s", addr)
		case <-tick.C:
		}
	}
	n := &Nginx{Addr: addr, Dir: dir, Conf: confFile, Upstream: upFile, Started: time.Since(start)}
	t.Logf("nginx on %s in front of %q ready in %s", addr, upstream, n.Started.Round(time.Millisecond))
	return n
}
