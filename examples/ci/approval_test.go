package ci

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/itchyny/gojq"
	"github.com/rhysd/actionlint"
	"mvdan.cc/sh/v3/syntax"
)

// approvalSteps returns the "Who approved" step of each job that has one, by job.
func approvalSteps(t *testing.T) map[string]*actionlint.Step {
	t.Helper()
	wf, errs := actionlint.Parse(read(t, reusableFile))
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	steps := map[string]*actionlint.Step{}
	for id, job := range wf.Jobs {
		for _, s := range job.Steps {
			if r, ok := s.Exec.(*actionlint.ExecRun); ok && r.Run != nil && strings.Contains(r.Run.Value, "/approvals") {
				steps[id] = s
			}
		}
	}
	if steps["production"] == nil {
		t.Fatalf("%s: the production job has no step that reads the run's approvals (have %v)", reusableFile, sortedKeys(steps))
	}
	return steps
}

// TestApprovalFilter runs the approval steps' --jq filter with gojq, the jq that gh embeds
// (gh passes its environment, so $ENV works), over review histories as GitHub's
// GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals returns them: only approved
// reviews of the step's environment count.
func TestApprovalFilter(t *testing.T) {
	for job, step := range approvalSteps(t) {
		filter := jqFilter(t, step.Exec.(*actionlint.ExecRun).Run.Value)
		env := step.Env.Vars["environment"]
		if env == nil || env.Value.Value != "${{ inputs.production }}" {
			t.Fatalf("%s: the approval step's ENVIRONMENT is not the production input", job)
		}
		q, err := gojq.Parse(filter)
		if err != nil {
			t.Fatalf("%s: the jq filter does not parse: %v", job, err)
		}
		code, err := gojq.Compile(q, gojq.WithEnvironLoader(func() []string { return []string{"ENVIRONMENT=production"} }))
		if err != nil {
			t.Fatalf("%s: the jq filter does not compile: %v", job, err)
		}
		for _, c := range []struct{ name, reviews, want string }{
			{"one approval", `[{"environments":[{"name":"production"}],"state":"approved","comment":"","user":{"login":"alice"}}]`, "alice"},
			{"other environments and rejections do not count", `[
				{"environments":[{"name":"staging"}],"state":"approved","comment":"","user":{"login":"carol"}},
				{"environments":[{"name":"production"}],"state":"rejected","comment":"no","user":{"login":"bob"}},
				{"environments":[{"name":"staging"},{"name":"production"}],"state":"approved","comment":"ship it","user":{"login":"alice"}}]`, "alice"},
			{"a re-run approved again", `[
				{"environments":[{"name":"production"}],"state":"approved","comment":"","user":{"login":"dave"}},
				{"environments":[{"name":"production"}],"state":"approved","comment":"","user":{"login":"alice"}},
				{"environments":[{"name":"production"}],"state":"approved","comment":"","user":{"login":"alice"}}]`, "alice,dave"},
			{"staging approved only", `[{"environments":[{"name":"staging"}],"state":"approved","comment":"","user":{"login":"carol"}}]`, ""},
			{"no review", `[]`, ""},
		} {
			var in any
			if err := json.Unmarshal([]byte(c.reviews), &in); err != nil {
				t.Fatal(err)
			}
			iter := code.Run(in)
			v, ok := iter.Next()
			if !ok {
				t.Fatalf("%s, %s: the filter gave nothing", job, c.name)
			}
			if err, ok := v.(error); ok {
				t.Fatalf("%s, %s: %v", job, c.name, err)
			}
			if v != c.want {
				t.Errorf("%s, %s: got %v, want %q", job, c.name, v, c.want)
			}
		}
	}
}

// TestApprovalStep runs each approval step's script with a stand-in gh that answers what
// the filter would: an approver becomes the step's output "by"; no approver fails the step
// and writes no output.
func TestApprovalStep(t *testing.T) {
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "gh"), "#!/bin/sh\nprintf '%s\\n' \"$FAKE_APPROVERS\"\n")
	if err := os.Chmod(filepath.Join(bin, "gh"), 0o755); err != nil {
		t.Fatal(err)
	}
	for job, step := range approvalSteps(t) {
		for _, c := range []struct{ approvers, want string }{{"alice", "by=alice\n"}, {"alice,dave", "by=alice,dave\n"}, {"", ""}} {
			out := filepath.Join(t.TempDir(), "output")
			writeFile(t, out, "")
			cmd := exec.Command("bash", "-e", "-c", step.Exec.(*actionlint.ExecRun).Run.Value)
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"GITHUB_OUTPUT="+out, "GITHUB_REPOSITORY=acme/web", "GITHUB_RUN_ID=4242",
				"ENVIRONMENT=production", "FAKE_APPROVERS="+c.approvers)
			log, err := cmd.CombinedOutput()
			got, _ := os.ReadFile(out)
			switch {
			case c.want == "" && (err == nil || !strings.Contains(string(log), "::error::")):
				t.Errorf("%s: no approver, yet the step did not fail with an error annotation: %v\n%s", job, err, log)
			case c.want != "" && err != nil:
				t.Errorf("%s: approved by %q, yet the step failed: %v\n%s", job, c.approvers, err, log)
			}
			if string(got) != c.want {
				t.Errorf("%s: approvers %q: the step's output is %q, want %q", job, c.approvers, got, c.want)
			}
		}
	}
}

// jqFilter returns the --jq argument of the gh call in a script.
func jqFilter(t *testing.T, script string) string {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "")
	if err != nil {
		t.Fatal(err)
	}
	filter := ""
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) < 2 || call.Args[0].Lit() != "gh" {
			return true
		}
		for i, w := range call.Args[:len(call.Args)-1] {
			if w.Lit() == "--jq" {
				filter = render(call.Args[i+1].Parts)
			}
		}
		return true
	})
	if filter == "" {
		t.Fatal("the approval step has no gh ... --jq call")
	}
	return filter
}
