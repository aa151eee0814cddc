// Command sandboxhost is the SSH host of the module's sandbox: a minimal SSH server, run as
// a Dagger service, that logs in one public key and serves what pushdeploy's ssh target
// uses, commands (sh -c, with the session's environment) and SFTP. The stand-in images
// have no sshd and nothing can be installed in a container here, so the sandbox brings its
// own; it is not a general-purpose SSH server (no shells, no forwarding, no passwords).
//
//	sandboxhost -addr :22 -host-key /etc/sandbox/host_key -authorized-key /etc/sandbox/client.pub
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func main() {
	addr := flag.String("addr", ":22", "address to listen on")
	hostKey := flag.String("host-key", "", "the host's private key (OpenSSH PEM)")
	authorized := flag.String("authorized-key", "", "the one public key allowed to log in (authorized_keys line)")
	flag.Parse()
	if err := serve(*addr, *hostKey, *authorized); err != nil {
		log.Fatalf("sandboxhost: %v", err)
	}
}

func serve(addr, hostKeyPath, authorizedPath string) error {
	hk, err := os.ReadFile(hostKeyPath)
	if err != nil {
		return fmt.Errorf("reading the host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(hk)
	if err != nil {
		return fmt.Errorf("parsing the host key: %w", err)
	}
	ak, err := os.ReadFile(authorizedPath)
	if err != nil {
		return fmt.Errorf("reading the authorized key: %w", err)
	}
	allowed, _, _, _, err := ssh.ParseAuthorizedKey(ak)
	if err != nil {
		return fmt.Errorf("parsing the authorized key: %w", err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Printf("sandboxhost: listening on %s", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c, cfg)
	}
}

func handle(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		log.Printf("sandboxhost: handshake with %s: %v", c.RemoteAddr(), err)
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go session(ch, creqs)
	}
}

// session serves one session: env requests, then one exec or the sftp subsystem.
func session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	env := os.Environ()
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil {
				env = append(env, kv.Name+"="+kv.Value)
			}
			_ = req.Reply(true, nil)
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			go discard(reqs)
			status(ch, run(ch, p.Command, env))
			return
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go discard(reqs)
			srv, err := sftp.NewServer(ch)
			if err == nil {
				_ = srv.Serve()
			}
			status(ch, 0)
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// run runs line under sh -c in its own process group, wired to the channel; its exit code.
func run(ch ssh.Channel, line string, env []string) int {
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Env = env
	cmd.Dir = os.Getenv("HOME")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 255
	}
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "sandboxhost: %v\n", err)
		return 127
	}
	var once sync.Once
	go func() {
		_, _ = io.Copy(stdin, ch)
		once.Do(func() { _ = stdin.Close() })
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 255
}

func status(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}

func discard(reqs <-chan *ssh.Request) {
	for r := range reqs {
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}
