package ci

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// ciDeploy is one deploy as an application's CI file configures it, with the wrappers
// (the reusable workflow and the action; the Jenkins library) read in.
type ciDeploy struct {
	where      string
	config     string          // the environments file it deploys: moduleConfig or cliConfig
	runner     string          // module or cli
	env        string          // the environment
	secrets    map[string]bool // the secret names the deploy passes
	sshKey     bool            // an SSH key is given
	knownHosts bool            // known_hosts is given
	approval   string          // where --approved-by comes from: "" (nowhere), or a problem
	approved   bool            // --approved-by is the CI's own approval
}

// TestDeploysGetTheirSecretsAndApproval checks every deploy of both minimal files against
// its environments file: every secret the environment names is passed, the SSH key and
// known_hosts slots are filled when the file leaves them to the deploy, and a protected
// environment's deploy takes --approved-by from the CI's approval (GitHub: the approvals
// step of the job bound to that environment; Jenkins: pushdeploy.approve, the input's
// submitter), an unprotected one from nothing.
func TestDeploysGetTheirSecretsAndApproval(t *testing.T) {
	files := envFiles(t)
	deploys := append(githubDeploys(t, string(read(t, workflowFile)), string(read(t, reusableFile))),
		jenkinsDeploys(t, string(read(t, jenkinsFile)))...)
	var have []string
	for _, d := range deploys {
		have = append(have, d.where+" "+d.env)
		if err := deployProblems(d, files); err != nil {
			t.Errorf("%s: %v", d.where, err)
		}
	}
	sort.Strings(have)
	want := []string{"Jenkinsfile production", "Jenkinsfile staging", "github-actions.yml production", "github-actions.yml staging"}
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("found the deploys %q, want %q", have, want)
	}
	// The wrappers hand what they are given to the command: the library passes the
	// approver and the secrets it took credentials for, the action its inputs.
	lib := string(read(t, libraryFile))
	for _, w := range []string{`"APPROVER=${args.approvedBy ?: ''}"`, `--approved-by "$APPROVER"`, `names << "env:${name}"`,
		`"SECRETS_REF=${names.join(',')}"`, `--secrets "$SECRETS_REF"`, `submitterParameter: 'APPROVER'`} {
		if !strings.Contains(lib, w) {
			t.Errorf("%s does not hold %q", libraryFile, w)
		}
	}
}

// TestDeployCheckCatchesMistakes makes sure TestDeploysGetTheirSecretsAndApproval can fail.
func TestDeployCheckCatchesMistakes(t *testing.T) {
	files := envFiles(t)
	wf, rw, jf := string(read(t, workflowFile)), string(read(t, reusableFile)), string(read(t, jenkinsFile))
	for _, c := range []struct{ name, file, old, new, want string }{
		{"a secret the file names is not passed", workflowFile, "secrets: SLACK_WEBHOOK", "secrets: OTHER",
			`secret "SLACK_WEBHOOK" (environments.staging.notifications.slack.webhook) is not passed`},
		{"no SSH key", reusableFile, "ssh-key: env:SSH_KEY\n          known-hosts: file:${{ inputs.known-hosts }}\n          secrets: ${{ inputs.secrets }}\n\n  production:",
			"known-hosts: file:${{ inputs.known-hosts }}\n          secrets: ${{ inputs.secrets }}\n\n  production:",
			"the file leaves the SSH key to the deploy, which has no SSH key"},
		{"production without the approval", reusableFile, "approved-by: ${{ steps.approval.outputs.by }}", "approved-by: ${{ github.actor }}",
			`"production" is protected: --approved-by is "${{ github.actor }}", not the approval step's output`},
		{"production from a job of another environment", reusableFile, "environment: ${{ inputs.production }}", "environment: ${{ inputs.staging }}",
			`deploys "production" from a job bound to GitHub environment "staging"`},
		{"a Jenkins secret missing", jenkinsFile, "DATABASE_URL: 'shop-{env}-database-url',", "",
			`secret "DATABASE_URL" (environments.staging.docker.secret_env.DATABASE_URL) is not passed`},
		{"Jenkins production without the approval", jenkinsFile, "approvedBy: pushdeploy.approve(submitter: 'shop-release-managers')", "approvedBy: env.CHANGE_AUTHOR",
			`"production" is protected: approvedBy is not pushdeploy.approve(...)`},
		{"Jenkins without known_hosts", jenkinsFile, "knownHosts: 'shop-known-hosts', ", "",
			"the file leaves known_hosts to the deploy, which has no known_hosts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var deploys []ciDeploy
			switch c.file {
			case workflowFile:
				deploys = githubDeploys(t, replaceOnce(t, wf, c.old, c.new), rw)
			case reusableFile:
				deploys = githubDeploys(t, wf, replaceOnce(t, rw, c.old, c.new))
			default:
				deploys = jenkinsDeploys(t, replaceOnce(t, jf, c.old, c.new))
			}
			var errs []string
			for _, d := range deploys {
				if err := deployProblems(d, files); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if !strings.Contains(strings.Join(errs, "\n"), c.want) {
				t.Errorf("problems do not say %q:\n%s", c.want, strings.Join(errs, "\n"))
			}
		})
	}
}

func envFiles(t *testing.T) map[string]*config.File {
	t.Helper()
	files := map[string]*config.File{}
	for _, name := range []string{moduleConfig, cliConfig} {
		f, err := config.Load(name)
		if err != nil {
			t.Fatalf("the example environments file: %v", err)
		}
		files[name] = f
	}
	return files
}

// githubDeploys reads the deploys of the minimal workflow: the reusable workflow's steps that
// use the action with function deploy, with the caller's with: and the workflow_call
// defaults filled in for ${{ inputs.NAME }}.
func githubDeploys(t *testing.T, caller, reusable string) []ciDeploy {
	t.Helper()
	cw, errs := actionlint.Parse([]byte(caller))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", workflowFile, errs[0])
	}
	rw, errs := actionlint.Parse([]byte(reusable))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", reusableFile, errs[0])
	}
	var call *actionlint.WorkflowCall
	for _, j := range cw.Jobs {
		if j.WorkflowCall != nil && strings.HasPrefix(j.WorkflowCall.Uses.Value, "pushdeploy/pushdeploy/.github/workflows/deploy.yml@") {
			call = j.WorkflowCall
		}
	}
	if call == nil {
		t.Fatalf("%s: no job uses pushdeploy/pushdeploy/.github/workflows/deploy.yml", workflowFile)
	}
	inputs := map[string]string{}
	for _, ev := range rw.On {
		if wc, ok := ev.(*actionlint.WorkflowCallEvent); ok {
			for _, in := range wc.Inputs {
				if in.Default != nil {
					inputs[in.Name.Value] = in.Default.Value
				}
			}
		}
	}
	for name, in := range call.Inputs {
		inputs[name] = in.Value.Value
	}
	expr := regexp.MustCompile(`\$\{\{\s*inputs\.([\w-]+)\s*\}\}`)
	eval := func(s string) string {
		return expr.ReplaceAllStringFunc(s, func(m string) string { return inputs[expr.FindStringSubmatch(m)[1]] })
	}
	runner := inputs["mode"]
	cfg := moduleConfig
	if runner == "cli" {
		cfg = cliConfig
	}
	var out []ciDeploy
	for _, id := range sortedKeys(rw.Jobs) {
		job := rw.Jobs[id]
		ghEnv := ""
		if job.Environment != nil && job.Environment.Name != nil {
			ghEnv = eval(job.Environment.Name.Value)
		}
		approvals := map[string]string{} // step id to the environment whose approvals it reads
		for _, s := range job.Steps {
			if r, ok := s.Exec.(*actionlint.ExecRun); ok && r.Run != nil && s.ID != nil && strings.Contains(r.Run.Value, "/actions/runs/$GITHUB_RUN_ID/approvals") {
				if e := s.Env.Vars["environment"]; e != nil {
					approvals[s.ID.Value] = eval(e.Value.Value)
				}
			}
			a, ok := s.Exec.(*actionlint.ExecAction)
			if !ok || !strings.HasPrefix(a.Uses.Value, "pushdeploy/pushdeploy@") {
				continue
			}
			with := func(name string) string {
				if in := a.Inputs[name]; in != nil {
					return eval(in.Value.Value)
				}
				return ""
			}
			if with("function") != "deploy" {
				continue
			}
			d := ciDeploy{where: workflowFile, config: cfg, runner: runner, env: with("environment"),
				secrets: map[string]bool{}, sshKey: with("ssh-key") != "", knownHosts: with("known-hosts") != ""}
			for _, n := range strings.Split(with("secrets"), ",") {
				if n = strings.TrimSpace(n); n != "" {
					d.secrets[n] = true
				}
			}
			by := ""
			if in := a.Inputs["approved-by"]; in != nil {
				by = in.Value.Value
			}
			switch m := regexp.MustCompile(`^\$\{\{\s*steps\.([\w-]+)\.outputs\.by\s*\}\}$`).FindStringSubmatch(by); {
			case by == "":
			case m != nil && approvals[m[1]] == d.env && ghEnv == d.env:
				d.approved = true
			case m != nil && ghEnv != d.env:
				d.approval = fmt.Sprintf("deploys %q from a job bound to GitHub environment %q: its reviewers did not approve this", d.env, ghEnv)
			default:
				d.approval = fmt.Sprintf("--approved-by is %q, not the approval step's output", by)
			}
			out = append(out, d)
		}
	}
	return out
}

// jenkinsDeploys reads the deploys of the minimal Jenkinsfile: pushdeploy.deploy(creds +
// [env: 'NAME', ...]) with the credentials map it adds to.
func jenkinsDeploys(t *testing.T, jf string) []ciDeploy {
	t.Helper()
	creds := regexp.MustCompile(`(?s)def\s+(\w+)\s*=\s*\[(.*?)\]\]`).FindStringSubmatch(jf)
	if creds == nil {
		t.Fatalf("%s: no credentials map (def creds = [sshKey: ..., secrets: [...]])", jenkinsFile)
	}
	secrets := map[string]bool{}
	if i := strings.Index(creds[2], "secrets:"); i >= 0 {
		for _, m := range regexp.MustCompile(`(\w+)\s*:\s*'`).FindAllStringSubmatch(creds[2][i:], -1) {
			secrets[m[1]] = true
		}
	}
	var out []ciDeploy
	call := regexp.MustCompile(`(?s)pushdeploy\.deploy\(\s*` + creds[1] + `\s*\+\s*\[env:\s*'(\w+)'(.*?)\]\)\s*\}`)
	for _, m := range call.FindAllStringSubmatch(jf, -1) {
		d := ciDeploy{where: jenkinsFile, config: moduleConfig, runner: "module", env: m[1], secrets: secrets,
			sshKey: strings.Contains(creds[2], "sshKey:"), knownHosts: strings.Contains(creds[2], "knownHosts:")}
		switch rest := m[2]; {
		case !strings.Contains(rest, "approvedBy:"):
		case regexp.MustCompile(`approvedBy:\s*pushdeploy\.approve\(submitter:\s*'[^']+'\)`).MatchString(rest):
			d.approved = true
		default:
			d.approval = "approvedBy is not pushdeploy.approve(...)"
		}
		out = append(out, d)
	}
	return out
}

func deployProblems(d ciDeploy, files map[string]*config.File) error {
	file := files[d.config]
	e, err := file.Env(d.env)
	if err != nil {
		return err
	}
	uses, err := file.Secrets(d.env)
	if err != nil {
		return err
	}
	var problems []string
	for _, u := range uses {
		switch k := u.Ref.Kind(); {
		case (k == "name" || k == "env" && d.runner == "cli") && !d.secrets[u.Ref.Name()]:
			problems = append(problems, fmt.Sprintf("secret %q (%s) is not passed", u.Ref.Name(), u.Path))
		case k == "env" && d.runner == "module":
			problems = append(problems, fmt.Sprintf("%s is %q, which the module cannot read: name the secret and pass it", u.Path, u.Ref))
		}
	}
	var access *config.SSHAccess
	switch {
	case e.SSH != nil:
		access = &e.SSH.SSHAccess
	case e.Docker != nil:
		access = &e.Docker.SSHAccess
	}
	if access != nil && access.Key == "" && !d.sshKey {
		problems = append(problems, "the file leaves the SSH key to the deploy, which has no SSH key")
	}
	if access != nil && access.KnownHosts == "" && !d.knownHosts {
		problems = append(problems, "the file leaves known_hosts to the deploy, which has no known_hosts")
	}
	switch {
	case d.approval != "" && e.Protected:
		problems = append(problems, fmt.Sprintf("%q is protected: %s", d.env, d.approval))
	case d.approval != "":
		problems = append(problems, d.approval)
	case e.Protected && !d.approved:
		problems = append(problems, fmt.Sprintf("%q is protected: the deploy needs --approved-by from the CI's approval", d.env))
	case !e.Protected && d.approved:
		problems = append(problems, fmt.Sprintf("%q is not protected, but the deploy passes an approval", d.env))
	}
	if len(problems) > 0 {
		return fmt.Errorf("deploy %s: %s", d.env, strings.Join(problems, "; "))
	}
	return nil
}
