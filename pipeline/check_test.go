package pipeline

import "testing"

func TestRestartProgram(t *testing.T) {
	for cmd, want := range map[string]string{
		"pm2 startOrReload ecosystem.config.js": "pm2",
		"NODE_ENV=production pm2 reload app":    "pm2",
		"sudo systemctl restart myapp":          "sudo",
		"'/usr/local/bin/app' --reload":         "/usr/local/bin/app",
		"":                                      "",
		"   ":                                   "",
	} {
		if got := restartProgram(cmd); got != want {
			t.Errorf("restartProgram(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// Every host out of reach makes CheckError an unreachable target; one host of two is a
// plain failure.
func TestCheckErrorExitCode(t *testing.T) {
	down := HostCheck{Host: "a:22", Checks: []CheckItem{{Check: CheckReachable, Detail: "refused"}}}
	up := HostCheck{Host: "b:22", Checks: []CheckItem{{Check: CheckReachable, OK: true}, {Check: CheckLogin, Detail: "denied"}}}
	if got := ExitCode(CheckError(&CheckReport{Env: "s", Hosts: []HostCheck{down}})); got != ExitUnreachable {
		t.Errorf("all down: %d", got)
	}
	if got := ExitCode(CheckError(&CheckReport{Env: "s", Hosts: []HostCheck{down, up}})); got != ExitFailed {
		t.Errorf("one down: %d", got)
	}
	if err := CheckError(&CheckReport{Env: "s", Hosts: []HostCheck{{Host: "c", Checks: []CheckItem{{Check: CheckLogin, OK: true}}}}}); err != nil {
		t.Errorf("all ok: %v", err)
	}
}
