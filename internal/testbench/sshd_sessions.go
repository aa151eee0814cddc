package testbench

import (
	"os"
	"strings"
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
