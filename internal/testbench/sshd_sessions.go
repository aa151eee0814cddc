package testbench

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// SSHLogSessions makes sshd log every session it starts (LogLevel VERBOSE, for every
// login), which Sessions counts. Default: sessions are not logged.
func SSHLogSessions() SSHOption {
	return SSHConfig("Match all", "LogLevel VERBOSE")
}

// Sessions is how many sessions (commands, shells, subsystems such as SFTP) the server has
// started so far, counted in its log; the hosts must be started with SSHLogSessions.
func (h *SSHHost) Sessions() int {
	b, _ := os.ReadFile(h.log)
	return strings.Count(string(b), "Starting session: ")
}

// WaitSSHIdle waits until no server of hosts has a session process left (every connection
// closed has ended, and its processor time has reached CPU), or timeout passes.
func WaitSSHIdle(hosts []*SSHHost, timeout time.Duration) error {
	servers := map[int]bool{}
	for _, h := range hosts {
		h.mu.Lock()
		if h.cmd != nil && h.cmd.Process != nil {
			servers[h.cmd.Process.Pid] = true
		}
		h.mu.Unlock()
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		busy := 0
		children := processChildren()
		for pid := range servers {
			busy += len(children[pid])
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d ssh session processes still run after %s", busy, timeout)
		}
	}
}
