package main

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestControlCommandsNeedADeploy: pause, resume and abort need --env, and refuse, saying
// why, when no deploy holds the lock: none at all, or a maintenance window's lock. (A deploy
// paused, resumed and aborted in its bake: pipeline's TestPauseResumeAbortInTheBake.)
func TestControlCommandsNeedADeploy(t *testing.T) {
	for _, verb := range []string{"pause", "resume", "abort"} {
		wantExit(t, pipeline.ExitUsage, verb)
	}
	e := newSSHEnv(t)
	for _, verb := range []string{"pause", "resume", "abort"} {
		if out := wantExit(t, pipeline.ExitFailed, e.cmd(verb)...); !strings.Contains(out, `environment "staging": no deploy is running (the deploy lock is free)`) {
			t.Errorf("%s with no lock: %s", verb, out)
		}
	}
	wantExit(t, pipeline.ExitOK, e.cmd("lock", "acquire", "--reason", "db migration")...)
	if out := wantExit(t, pipeline.ExitFailed, e.cmd("pause")...); !strings.Contains(out, "no deploy is running: the lock is held by") || !strings.Contains(out, "db migration") {
		t.Errorf("pause of a maintenance lock: %s", out)
	}
}
