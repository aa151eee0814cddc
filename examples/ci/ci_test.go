// Package ci holds the CI examples (github-actions.yml, Jenkinsfile) and the tests that keep
// them true: actionlint finds nothing in the workflow, and every dagger call and pushdeploy
// command in either file names a function, argument, command or flag that exists, passes
// secrets as env:NAME or file:PATH, passes every secret its environments file names, and
// takes --approved-by from the CI's own approval.
package ci

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/rhysd/actionlint"
	"mvdan.cc/sh/v3/syntax"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

const (
	workflowFile  = "github-actions.yml"
	jenkinsFile   = "Jenkinsfile"
	moduleConfig  = "pushdeploy.yaml"       // what the dagger calls deploy
	cliConfig     = "pushdeploy.files.yaml" // what the pushdeploy commands deploy
	moduleRootDir = "../.."
)

// TestWorkflowActionlint lints the workflow with actionlint, with shellcheck on its run:
// scripts when shellcheck is installed. Any finding fails.
func TestWorkflowActionlint(t *testing.T) {
	src := read(t, workflowFile)
	errs := lint(t, workflowFile, src)
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", workflowFile, e.Line, e.Column, e.Message, e.Kind)
	}
}

// TestActionlintCatchesMistakes makes sure the lint above can fail: the workflow with
// one mistake each must not lint clean.
func TestActionlintCatchesMistakes(t *testing.T) {
	src := string(read(t, workflowFile))
	for _, c := range []struct{ name, old, new, want string }{
		{"unknown context property", "steps.approval.outputs.by", "steps.aproval.outputs.by", "aproval"},
		{"needs an unknown job", "needs: staging\n", "needs: stagin\n", "stagin"},
		{"unknown action input", "comment_mode:", "coment_mode:", "coment_mode"},
		{"unknown permission", "actions: read", "action: read", "action"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := replaceOnce(t, src, c.old, c.new)
			errs := lint(t, workflowFile, []byte(bad))
			if len(errs) == 0 {
				t.Fatalf("actionlint found nothing wrong with %q replaced by %q", c.old, c.new)
			}
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Message)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Errorf("findings do not mention %q:\n%s", c.want, strings.Join(msgs, "\n"))
			}
		})
	}
}

func lint(t *testing.T, name string, src []byte) []*actionlint.Error {
	t.Helper()
	opts := &actionlint.LinterOptions{}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else if os.Getenv("PUSHDEPLOY_REQUIRE_BENCH") != "" {
		// CI must not pass by checking less.
		t.Fatal("shellcheck is not installed (Debian package shellcheck): actionlint would not check the run: scripts")
	} else {
		t.Log("shellcheck is not installed: run: scripts are not shellchecked")
	}
	l, err := actionlint.NewLinter(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(name, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

// TestCommandsExist checks every dagger call and pushdeploy command of both CI files
// against the module's functions and the CLI's commands.
func TestCommandsExist(t *testing.T) {
	mod, cli := surfaces(t)
	cmds := ciCommands(t)
	for _, c := range cmds {
		if _, err := check(c, mod, cli); err != nil {
			t.Errorf("%s: %v", c.where, err)
		}
	}
	// The files must hold what the issues ask for, so that a parser that finds nothing
	// cannot pass.
	want := map[string][]string{
		workflowFile: {"dagger test export", "dagger deploy staging", "dagger deploy production approved",
			"pushdeploy deploy staging", "pushdeploy deploy production approved"},
		jenkinsFile: {"dagger test export", "dagger publish", "dagger deploy staging", "dagger deploy production approved"},
	}
	for file, kinds := range want {
		var have []string
		for _, c := range cmds {
			if c.file == file {
				have = append(have, summary(c, mod, cli))
			}
		}
		for _, k := range kinds {
			if !slices.Contains(have, k) {
				t.Errorf("%s has no %q command (has %q)", file, k, have)
			}
		}
	}
}

// TestCheckerCatchesMistakes feeds the checker wrong commands: each must be refused with a
// message that names what is wrong.
func TestCheckerCatchesMistakes(t *testing.T) {
	mod, cli := surfaces(t)
	const dc = `dagger -m "$M" call --source . `
	for _, c := range []struct{ script, want string }{
		{dc + `deploy --env staging --aproved-by "$X"`, `unknown argument --aproved-by of function "deploy"`},
		{dc + `deploy --approved-by "$X"`, `deploy: required argument --env`},
		{dc + `deplyo --env staging`, `unknown function "deplyo"`},
		{`dagger -m "$M" call --sourse . test`, `unknown argument --sourse of the module's constructor`},
		{dc + `test export --paht reports`, `unknown argument --paht of function "export"`},
		{dc + `test export`, `export: required argument --path`},
		{dc + `--ssh-key "$SSH_KEY" deploy --env staging`, `--ssh-key is a secret: pass env:NAME or file:PATH`},
		{dc + `--secrets env:A,"$B" deploy --env staging`, `--secrets is a secret: pass env:NAME or file:PATH`},
		{dc + `publish`, `publish: required argument --repository`},
		{dc + `status stdout`, `"stdout" is not a function of string`},
		{`dagger --bogus call test`, `unknown dagger flag "--bogus"`},
		{`dagger run go test`, `want "dagger call"`},
		{`pushdeploy deploy --env staging --artifact dist/`, `unknown flag --artifact of "pushdeploy deploy"`},
		{`pushdeploy deploi --env staging`, `unknown command "deploi"`},
		{`pushdeploy deploy --env staging --ssh-key "$SSH_KEY"`, `--ssh-key is a secret: pass env:NAME or file:PATH`},
		{`pushdeploy deploy --env staging --secret SLACK=$SLACK`, `--secret is a secret: pass NAME=env:VAR or NAME=file:PATH`},
		{`pushdeploy status --env`, `--env needs a value`},
	} {
		cmds := commandsIn(t, "test", 1, c.script, nil)
		if len(cmds) != 1 {
			t.Fatalf("%q: found %d commands, want 1", c.script, len(cmds))
		}
		_, err := check(cmds[0], mod, cli)
		if err == nil {
			t.Errorf("%q: accepted", c.script)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %q", c.script, err, c.want)
		}
	}
}

// TestDeploysGetTheirSecretsAndApproval checks each deploy command against its environments
// file: every secret the environment names is passed, the SSH key and known_hosts slots are
// filled when the file leaves them to the deploy, and a protected environment's deploy has
// --approved-by from the CI's approval (the GitHub job bound to that environment and the
// approvals step; Jenkins' input submitterParameter).
func TestDeploysGetTheirSecretsAndApproval(t *testing.T) {
	mod, cli := surfaces(t)
	files := map[string]*config.File{}
	for _, name := range []string{moduleConfig, cliConfig} {
		f, err := config.Load(name)
		if err != nil {
			t.Fatalf("the example environments file: %v", err)
		}
		files[name] = f
	}
	n := 0
	for _, c := range ciCommands(t) {
		inv, err := check(c, mod, cli)
		if err != nil || inv.function != "deploy" {
			continue // TestCommandsExist reports it
		}
		n++
		if err := deployProblems(c, inv, files); err != nil {
			t.Errorf("%s: %v", c.where, err)
		}
	}
	if n < 6 {
		t.Errorf("found %d deploy commands, want 6", n)
	}
}

// TestDeployCheckCatchesMistakes makes sure TestDeploysGetTheirSecretsAndApproval can fail.
func TestDeployCheckCatchesMistakes(t *testing.T) {
	mod, cli := surfaces(t)
	files := map[string]*config.File{}
	for _, name := range []string{moduleConfig, cliConfig} {
		f, err := config.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	const dc = `dagger -m "$M" call --source . --ssh-key env:SSH_KEY --known-hosts .ci/known_hosts `
	const all = `--secrets env:REGISTRY_PASSWORD,env:DATABASE_URL,env:SLACK_WEBHOOK,env:ONEUPTIME_TOKEN `
	approved := map[string]string{"APPROVED_BY": "${{ steps.approval.outputs.by }}"}
	for _, c := range []struct {
		script string
		env    map[string]string
		ghEnv  string
		want   string
	}{
		{dc + `--secrets env:REGISTRY_PASSWORD,env:SLACK_WEBHOOK deploy --config pushdeploy.yaml --env staging`, nil, "staging",
			`secret "DATABASE_URL" (environments.staging.docker.secret_env.DATABASE_URL) is not passed`},
		{`dagger -m "$M" call --source . --known-hosts k ` + all + `deploy --config pushdeploy.yaml --env staging`, nil, "staging",
			`the file leaves the SSH key to the deploy, which has no --ssh-key`},
		{dc + all + `deploy --config pushdeploy.yaml --env production`, nil, "production",
			`"production" is protected: the deploy needs --approved-by`},
		{dc + all + `deploy --config pushdeploy.yaml --env production --approved-by "$GITHUB_ACTOR"`, nil, "production",
			`--approved-by "$GITHUB_ACTOR" is not the approval's output`},
		{dc + all + `deploy --config pushdeploy.yaml --env production --approved-by "$APPROVED_BY"`, approved, "staging",
			`deploys "production" from a job bound to GitHub environment "staging"`},
		{dc + all + `deploy --config pushdeploy.yaml --env qa`, nil, "qa", `environment "qa" is not in`},
		{`pushdeploy deploy --env staging --artifacts dist/ --ssh-key env:SSH_KEY --known-hosts file:k`, nil, "staging",
			`secret "SLACK_WEBHOOK" (environments.staging.notifications.slack.webhook) is not in the step's environment`},
	} {
		cmds := commandsIn(t, workflowFile, 1, c.script, c.env)
		cmds[0].ghEnvironment = c.ghEnv
		inv, err := check(cmds[0], mod, cli)
		if err != nil {
			t.Fatalf("%q: %v", c.script, err)
		}
		err = deployProblems(cmds[0], inv, files)
		if err == nil {
			t.Errorf("%q: accepted", c.script)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %q", c.script, err, c.want)
		}
	}
}

// TestNoSecretInScripts: the workflow's run: scripts never expand a secret themselves (they
// read it from env:), and the Jenkinsfile's sh steps are single-quoted, so that Groovy never
// interpolates a credential into the script.
func TestNoSecretInScripts(t *testing.T) {
	for _, f := range []struct{ name, src string }{
		{workflowFile, string(read(t, workflowFile))},
		{jenkinsFile, string(read(t, jenkinsFile))},
	} {
		if err := secretInScripts(f.name, f.src); err != nil {
			t.Error(err)
		}
	}
	bad := []struct{ name, src string }{
		{workflowFile, "jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ secrets.SSH_KEY }}\n"},
		{jenkinsFile, "sh \"dagger call --token $TOKEN\"\n"},
		{jenkinsFile, "sh(returnStdout: true, script: \"\"\"\n echo $TOKEN\n\"\"\")\n"},
	}
	for _, b := range bad {
		if secretInScripts(b.name, b.src) == nil {
			t.Errorf("%s: %q accepted", b.name, b.src)
		}
	}
}

func secretInScripts(name, src string) error {
	if name == jenkinsFile {
		if m := doubleQuotedSh.FindStringIndex(src); m != nil {
			return fmt.Errorf("%s:%d: a double-quoted sh script: Groovy interpolates it; use single quotes so the shell expands the variables", name, lineAt(src, m[0]))
		}
		return nil
	}
	wf, errs := actionlint.Parse([]byte(src))
	if len(errs) > 0 {
		return errs[0]
	}
	for _, id := range sortedKeys(wf.Jobs) {
		for _, s := range wf.Jobs[id].Steps {
			if r, ok := s.Exec.(*actionlint.ExecRun); ok && r.Run != nil && secretExpr.MatchString(r.Run.Value) {
				return fmt.Errorf("%s:%d: a run: script expands a secret; map it into the step's env: and pass env:NAME", name, r.Run.Pos.Line)
			}
		}
	}
	return nil
}

var (
	doubleQuotedSh = regexp.MustCompile(`\bsh\b\s*(\(\s*([A-Za-z]+\s*:\s*[^,)]+,\s*)*(script\s*:\s*)?)?"`)
	secretExpr     = regexp.MustCompile(`\$\{\{[^}]*\b(secrets\.|github\.token)`)
)

// ---- the surfaces: the module's functions and the CLI's commands ----

type argument struct {
	name     string // --name
	kind     string // string, bool, int, secret, secrets, file, directory, container, strings
	required bool
}

type function struct {
	name    string
	args    map[string]argument
	returns string // string, directory, file, container
}

type module struct {
	ctor  map[string]argument
	funcs map[string]*function
}

type command struct {
	name  string
	flags map[string]cliFlag // by long name
	short map[string]string  // shorthand to long name
}

type cliFlag struct {
	name, typ string // typ is empty for booleans
	secret    bool   // takes env:NAME or file:PATH
}

var (
	surfaceOnce sync.Once
	surfaceMod  *module
	surfaceCLI  map[string]*command
	surfaceErr  error
)

func surfaces(t *testing.T) (*module, map[string]*command) {
	t.Helper()
	surfaceOnce.Do(func() {
		surfaceMod, surfaceErr = loadModule(moduleRootDir)
		if surfaceErr == nil {
			surfaceCLI, surfaceErr = loadCLI()
		}
	})
	if surfaceErr != nil {
		t.Fatal(surfaceErr)
	}
	return surfaceMod, surfaceCLI
}

// loadModule reads the module's functions from its Go source as Dagger does: New's
// parameters are the constructor's arguments, the exported methods of *Pushdeploy are the
// functions, names in kebab case; an argument is optional with +optional, +default or
// +defaultPath.
func loadModule(dir string) (*module, error) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	m := &module{funcs: map[string]*function{}}
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") || filepath.Base(path) == "dagger.gen.go" {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() {
				continue
			}
			args := arguments(fset, f, fd)
			switch {
			case fd.Recv == nil && fd.Name.Name == "New":
				m.ctor = args
			case fd.Recv != nil && receiverIs(fd, "Pushdeploy"):
				m.funcs[kebab(fd.Name.Name)] = &function{name: kebab(fd.Name.Name), args: args, returns: returns(fd)}
			}
		}
	}
	if m.ctor == nil || len(m.funcs) == 0 {
		return nil, fmt.Errorf("no New or no functions of *Pushdeploy in %s", dir)
	}
	return m, nil
}

func receiverIs(fd *ast.FuncDecl, name string) bool {
	star, ok := fd.Recv.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == name
}

func arguments(fset *token.FileSet, f *ast.File, fd *ast.FuncDecl) map[string]argument {
	args := map[string]argument{}
	prev := fd.Type.Params.Opening
	for _, field := range fd.Type.Params.List {
		kind := typeKind(field.Type)
		// The pragmas are in the comments between the previous parameter and this one.
		var pragmas strings.Builder
		for _, cg := range f.Comments {
			if cg.Pos() > prev && cg.End() < field.Pos() {
				pragmas.WriteString(cg.Text())
			}
		}
		prev = field.End()
		if kind == "context" {
			continue
		}
		p := pragmas.String()
		optional := strings.Contains(p, "+optional") || strings.Contains(p, "+default=") || strings.Contains(p, "+defaultPath=")
		for _, n := range field.Names {
			args[kebab(n.Name)] = argument{name: kebab(n.Name), kind: kind, required: !optional}
		}
	}
	return args
}

func typeKind(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.StarExpr:
		return strings.ToLower(typeKind(t.X))
	case *ast.SelectorExpr:
		if t.Sel.Name == "Context" {
			return "context"
		}
		return t.Sel.Name
	case *ast.ArrayType:
		return typeKind(t.Elt) + "s"
	}
	return fmt.Sprintf("%T", e)
}

func returns(fd *ast.FuncDecl) string {
	if fd.Type.Results == nil || len(fd.Type.Results.List) == 0 {
		return "void"
	}
	return typeKind(fd.Type.Results.List[0].Type)
}

// kebab turns a Go name into Dagger's CLI name: BuildArtifacts → build-artifacts,
// sourceUrl → source-url, SSHKey → ssh-key.
func kebab(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// The functions of the core types a call can chain onto a module function's result.
var coreFunctions = map[string]map[string]*function{
	"directory": {"export": {name: "export", returns: "string", args: map[string]argument{
		"path": {name: "path", kind: "string", required: true}, "wipe": {name: "wipe", kind: "bool"}}}},
	"file": {"export": {name: "export", returns: "string", args: map[string]argument{
		"path": {name: "path", kind: "string", required: true}, "allow-parent-dir-path": {name: "allow-parent-dir-path", kind: "bool"}}}},
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain removes the CLI that the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildCLI builds cmd/pushdeploy from this tree once per test binary.
func buildCLI() (string, error) {
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "pushdeploy-ci-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pushdeploy")
		build := exec.Command("go", "build", "-o", binPath, "github.com/pushdeploy/pushdeploy/cmd/pushdeploy")
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building the CLI: %v\n%s", err, out)
		}
	})
	return binPath, binErr
}

func cliBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// loadCLI reads the CLI's commands and flags from its help.
func loadCLI() (map[string]*command, error) {
	bin, err := buildCLI()
	if err != nil {
		return nil, err
	}
	help, err := exec.Command(bin, "help").Output()
	if err != nil {
		return nil, fmt.Errorf("pushdeploy help: %w", err)
	}
	names := helpSection(string(help), "Available Commands:")
	if len(names) == 0 {
		return nil, fmt.Errorf("pushdeploy help lists no commands:\n%s", help)
	}
	cmds := map[string]*command{}
	for _, line := range names {
		name := strings.Fields(line)[0]
		out, err := exec.Command(bin, name, "--help").Output()
		if err != nil {
			return nil, fmt.Errorf("pushdeploy %s --help: %w", name, err)
		}
		c := &command{name: name, flags: map[string]cliFlag{}, short: map[string]string{}}
		// Every flag line of the help, whatever section it is in.
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "-") || !strings.HasPrefix(l, " ") {
				continue
			}
			m := flagLine.FindStringSubmatch(l)
			if m == nil {
				return nil, fmt.Errorf("pushdeploy %s --help: cannot read flag line %q", name, l)
			}
			f := cliFlag{name: m[2], typ: m[3], secret: strings.Contains(m[4], "env:NAME or file:PATH") || strings.Contains(m[4], "file:PATH or env:NAME")}
			c.flags[f.name] = f
			if m[1] != "" {
				c.short[m[1]] = f.name
			}
		}
		cmds[name] = c
	}
	return cmds, nil
}

var flagLine = regexp.MustCompile(`^\s+(?:-(\w), )?--([a-z0-9-]+)(?: (\w+))?\s{2,}(.*)$`)

// helpSection returns the indented lines under a cobra help heading.
func helpSection(help, heading string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == heading:
			in = true
		case in && strings.HasPrefix(l, " "):
			out = append(out, l)
		case in:
			return out
		}
	}
	return out
}

// ---- the commands in the CI files ----

type ciCommand struct {
	file, where   string
	args          []string          // words as written, with $VAR for expansions
	env           map[string]string // the step's environment (GitHub), name to raw value
	ghEnvironment string            // the GitHub environment the job is bound to
	submitter     string            // Jenkins: the input's submitterParameter
	defined       map[string]bool   // Jenkins: the variables the sh step can expand
}

func ciCommands(t *testing.T) []ciCommand {
	t.Helper()
	var cmds []ciCommand
	src := read(t, workflowFile)
	wf, errs := actionlint.Parse(src)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", workflowFile, errs[0])
	}
	for _, id := range sortedKeys(wf.Jobs) {
		job := wf.Jobs[id]
		for _, s := range job.Steps {
			r, ok := s.Exec.(*actionlint.ExecRun)
			if !ok || r.Run == nil {
				continue
			}
			env := map[string]string{}
			for _, e := range []*actionlint.Env{wf.Env, job.Env, s.Env} {
				if e != nil {
					for _, v := range e.Vars {
						env[v.Name.Value] = v.Value.Value
					}
				}
			}
			line := r.Run.Pos.Line
			if strings.Contains(r.Run.Value, "\n") {
				line++ // a block scalar starts on the next line
			}
			for _, c := range commandsIn(t, workflowFile, line, r.Run.Value, env) {
				if job.Environment != nil && job.Environment.Name != nil {
					c.ghEnvironment = job.Environment.Name.Value
				}
				cmds = append(cmds, c)
			}
		}
	}
	return append(cmds, jenkinsCommands(t, string(read(t, jenkinsFile)))...)
}

// jenkinsCommands returns the dagger and pushdeploy commands of a Jenkinsfile's sh steps.
func jenkinsCommands(t *testing.T, jf string) []ciCommand {
	t.Helper()
	var cmds []ciCommand
	submitter := ""
	if m := regexp.MustCompile(`submitterParameter\s+'(\w+)'`).FindStringSubmatch(jf); m != nil {
		submitter = m[1]
	}
	for _, m := range shScript.FindAllStringSubmatchIndex(jf, -1) {
		body := jf[m[2]:m[3]]
		// Groovy's triple-single-quoted strings: a backslash before a newline joins the
		// lines, \\ is one backslash.
		body = strings.ReplaceAll(body, "\\\n", "")
		body = strings.ReplaceAll(body, `\\`, `\`)
		defined := jenkinsVariables(jf, m[0])
		for _, c := range commandsIn(t, jenkinsFile, lineAt(jf, m[2]), body, nil) {
			c.submitter, c.defined = submitter, defined
			cmds = append(cmds, c)
		}
	}
	return cmds
}

var shScript = regexp.MustCompile(`(?s)\bsh\b\s*(?:\(\s*(?:[A-Za-z]+\s*:\s*[^,)]+,\s*)*(?:script\s*:\s*)?)?'''(.*?)'''`)

// commandsIn parses a shell script and returns its dagger and pushdeploy commands, also
// those inside command substitutions.
func commandsIn(t *testing.T, file string, line int, script string, env map[string]string) []ciCommand {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), file)
	if err != nil {
		t.Fatalf("%s:%d: the shell script does not parse: %v", file, line, err)
	}
	var out []ciCommand
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		var words []string
		for _, w := range call.Args {
			words = append(words, render(w.Parts))
		}
		if words[0] == "dagger" || words[0] == "pushdeploy" {
			out = append(out, ciCommand{file: file, args: words, env: env,
				where: fmt.Sprintf("%s:%d", file, line+int(call.Pos().Line())-1)})
		}
		return true
	})
	return out
}

// render writes a word as it reads, quotes removed and expansions as $NAME.
func render(parts []syntax.WordPart) string {
	var b strings.Builder
	for _, p := range parts {
		switch p := p.(type) {
		case *syntax.Lit:
			b.WriteString(p.Value)
		case *syntax.SglQuoted:
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			b.WriteString(render(p.Parts))
		case *syntax.ParamExp:
			b.WriteString("$" + p.Param.Value)
		case *syntax.CmdSubst:
			b.WriteString("$(...)")
		default:
			b.WriteString("$?")
		}
	}
	return b.String()
}

// ---- checking a command against the surfaces ----

// invocation is what a command calls, once checked.
type invocation struct {
	runner   string            // dagger or pushdeploy
	function string            // the module function or CLI command
	ctor     map[string]string // dagger: constructor arguments given
	args     map[string]string // the function's arguments or the command's flags given
}

func check(c ciCommand, mod *module, cli map[string]*command) (*invocation, error) {
	if c.args[0] == "dagger" {
		return checkDagger(c.args[1:], mod)
	}
	return checkCLI(c.args[1:], cli)
}

var (
	daggerValueFlags = map[string]bool{"-m": true, "--mod": true, "--progress": true, "-W": true, "--workdir": true}
	daggerBoolFlags  = map[string]bool{"-s": true, "--silent": true, "-q": true, "--quiet": true, "-v": true, "--verbose": true, "-d": true, "--debug": true}
)

func checkDagger(args []string, mod *module) (*invocation, error) {
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		name, _, inline := strings.Cut(args[i], "=")
		switch {
		case daggerBoolFlags[name]:
		case daggerValueFlags[name]:
			if !inline {
				i++
			}
		default:
			return nil, fmt.Errorf("unknown dagger flag %q", args[i])
		}
	}
	if i >= len(args) || args[i] != "call" {
		return nil, fmt.Errorf("want \"dagger call\", have %q", strings.Join(args, " "))
	}
	args = args[i+1:]
	inv := &invocation{runner: "dagger"}
	var err error
	if inv.ctor, args, err = takeArgs(args, mod.ctor, "the module's constructor"); err != nil {
		return nil, err
	}
	if err := requireArgs(inv.ctor, mod.ctor, "the module's constructor"); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no function after the constructor's arguments")
	}
	fn, ok := mod.funcs[args[0]]
	if !ok {
		return nil, fmt.Errorf("unknown function %q (the module has %s)", args[0], strings.Join(sortedKeys(mod.funcs), ", "))
	}
	inv.function = fn.name
	for args = args[1:]; ; {
		given, rest, err := takeArgs(args, fn.args, fmt.Sprintf("function %q", fn.name))
		if err != nil {
			return nil, err
		}
		if err := requireArgs(given, fn.args, fn.name); err != nil {
			return nil, err
		}
		if inv.args == nil {
			inv.args = given
		}
		if len(rest) == 0 {
			return inv, nil
		}
		next, ok := coreFunctions[fn.returns][rest[0]]
		if !ok {
			return nil, fmt.Errorf("%q is not a function of %s, what %q returns", rest[0], fn.returns, fn.name)
		}
		fn, args = next, rest[1:]
	}
}

// takeArgs reads --name value and --name=value arguments up to the next bare word.
func takeArgs(args []string, known map[string]argument, of string) (map[string]string, []string, error) {
	given := map[string]string{}
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		name, value, inline := strings.Cut(strings.TrimPrefix(args[0], "--"), "=")
		a, ok := known[name]
		if !ok {
			return nil, nil, fmt.Errorf("unknown argument --%s of %s (it has %s)", name, of, flagList(sortedKeys(known)))
		}
		args = args[1:]
		if !inline && a.kind != "bool" {
			if len(args) == 0 {
				return nil, nil, fmt.Errorf("--%s needs a value", name)
			}
			value, args = args[0], args[1:]
		}
		if a.kind == "secret" || a.kind == "secrets" {
			for _, v := range strings.Split(value, ",") {
				if !secretRef.MatchString(v) {
					return nil, nil, fmt.Errorf("--%s is a secret: pass env:NAME or file:PATH, not %q", name, v)
				}
			}
		}
		given[name] = value
	}
	return given, args, nil
}

var secretRef = regexp.MustCompile(`^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$`)

func requireArgs(given map[string]string, known map[string]argument, of string) error {
	for _, name := range sortedKeys(known) {
		if _, ok := given[name]; known[name].required && !ok {
			return fmt.Errorf("%s: required argument --%s is missing", of, name)
		}
	}
	return nil
}

func checkCLI(args []string, cli map[string]*command) (*invocation, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("pushdeploy without a command")
	}
	c, ok := cli[args[0]]
	if !ok {
		return nil, fmt.Errorf("unknown command %q (pushdeploy has %s)", args[0], strings.Join(sortedKeys(cli), ", "))
	}
	inv := &invocation{runner: "pushdeploy", function: c.name, args: map[string]string{}}
	for args = args[1:]; len(args) > 0; args = args[1:] {
		a := args[0]
		if !strings.HasPrefix(a, "-") {
			continue // a positional argument
		}
		name, value, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			long, ok := c.short[name]
			if !ok {
				return nil, fmt.Errorf("unknown flag %s of \"pushdeploy %s\"", a, c.name)
			}
			name = long
		}
		f, ok := c.flags[name]
		if !ok {
			return nil, fmt.Errorf("unknown flag --%s of \"pushdeploy %s\" (it has %s)", name, c.name, flagList(sortedKeys(c.flags)))
		}
		if !inline && f.typ != "" {
			if len(args) < 2 {
				return nil, fmt.Errorf("--%s needs a value", name)
			}
			value, args = args[1], args[1:]
		}
		switch {
		case f.secret && !secretRef.MatchString(value):
			return nil, fmt.Errorf("--%s is a secret: pass env:NAME or file:PATH, not %q", name, value)
		case name == "secret":
			if n, ref, ok := strings.Cut(value, "="); !ok || n == "" || !secretRef.MatchString(ref) {
				return nil, fmt.Errorf("--secret is a secret: pass NAME=env:VAR or NAME=file:PATH, not %q", value)
			}
			value = inv.args["secret"] + value + "\n"
		}
		inv.args[name] = value
	}
	return inv, nil
}

func flagList(names []string) string {
	for i := range names {
		names[i] = "--" + names[i]
	}
	return strings.Join(names, " ")
}

// summary names what a command does, for TestCommandsExist's list.
func summary(c ciCommand, mod *module, cli map[string]*command) string {
	inv, err := check(c, mod, cli)
	if err != nil {
		return "invalid"
	}
	s := inv.runner + " " + inv.function
	switch {
	case inv.function == "deploy":
		s += " " + inv.args["env"]
		if inv.args["approved-by"] != "" {
			s += " approved"
		}
	case inv.function == "test" && slices.Contains(c.args, "export"):
		s += " export"
	}
	return s
}

// TestVariablesAreDefined: every $NAME and env:NAME a command uses is set where it runs: in
// the step's env (or GitHub's defaults), or in Jenkins by the pipeline's environment, an
// earlier env.NAME assignment, the stage's withCredentials or input, or Jenkins itself.
func TestVariablesAreDefined(t *testing.T) {
	cmds := ciCommands(t)
	for _, c := range cmds {
		if err := undefinedVariables(c); err != nil {
			t.Errorf("%s: %v", c.where, err)
		}
	}
	jf := string(read(t, jenkinsFile))
	for _, c := range []struct{ file, old, new string }{
		{workflowFile, "--ssh-key env:SSH_KEY", "--ssh-key env:SSH_KEYS"},
		{workflowFile, `--approved-by "$APPROVED_BY"`, `--approved-by "$APPROVED"`},
		{jenkinsFile, `--approved-by "$APPROVER"`, `--approved-by "$APPROVR"`},
		{jenkinsFile, `"file:$SSH_KEY_FILE"`, `"file:$SSH_KEY_PATH"`},
		{jenkinsFile, "variable: 'DATABASE_URL'", "variable: 'DB_URL'"},
	} {
		var bad []ciCommand
		if c.file == jenkinsFile {
			bad = jenkinsCommands(t, replaceOnce(t, jf, c.old, c.new))
		} else {
			for _, cmd := range cmds {
				if cmd.file == workflowFile {
					cmd.args = slices.Clone(cmd.args)
					for i, a := range cmd.args {
						cmd.args[i] = strings.ReplaceAll(a, strings.Trim(strings.Fields(c.old)[1], `"`), strings.Trim(strings.Fields(c.new)[1], `"`))
					}
					bad = append(bad, cmd)
				}
			}
		}
		found := false
		for _, cmd := range bad {
			found = found || undefinedVariables(cmd) != nil
		}
		if !found {
			t.Errorf("%s with %q for %q: no undefined variable found", c.file, c.new, c.old)
		}
	}
}

var varRef = regexp.MustCompile(`(?:\$|env:)([A-Za-z_][A-Za-z0-9_]*)`)

func undefinedVariables(c ciCommand) error {
	var missing []string
	for _, a := range c.args {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			name := m[1]
			switch {
			case c.file == workflowFile && (c.env[name] != "" || strings.HasPrefix(name, "GITHUB_") || strings.HasPrefix(name, "RUNNER_")):
			case c.file == jenkinsFile && c.defined[name]:
			default:
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%q is not set where the command runs", missing)
	}
	return nil
}

// jenkinsBuiltins are the variables Jenkins sets in a multibranch build.
var jenkinsBuiltins = []string{"BRANCH_NAME", "BUILD_ID", "BUILD_NUMBER", "BUILD_URL", "GIT_BRANCH",
	"GIT_COMMIT", "GIT_URL", "JENKINS_URL", "JOB_NAME", "JOB_URL", "NODE_NAME", "WORKSPACE"}

// jenkinsVariables are the variables an sh step at offset can expand.
func jenkinsVariables(jf string, offset int) map[string]bool {
	defined := map[string]bool{}
	for _, n := range jenkinsBuiltins {
		defined[n] = true
	}
	before := jf[:offset]
	if m := regexp.MustCompile(`(?s)\benvironment\s*\{(.*?)\}`).FindStringSubmatch(before); m != nil {
		for _, a := range regexp.MustCompile(`(?m)^\s*([A-Za-z_]\w*)\s*=`).FindAllStringSubmatch(m[1], -1) {
			defined[a[1]] = true
		}
	}
	for _, a := range regexp.MustCompile(`\benv\.([A-Za-z_]\w*)\s*=`).FindAllStringSubmatch(before, -1) {
		defined[a[1]] = true
	}
	// The stage's own credentials and input.
	stage := before[max(0, strings.LastIndex(before, "stage(")):]
	for _, a := range regexp.MustCompile(`(?:variable|keyFileVariable|usernameVariable|passphraseVariable|submitterParameter)\s*:?\s*'(\w+)'`).FindAllStringSubmatch(stage, -1) {
		defined[a[1]] = true
	}
	return defined
}

// ---- a deploy against its environments file ----

func deployProblems(c ciCommand, inv *invocation, files map[string]*config.File) error {
	var file *config.File
	var named map[string]bool
	var flags map[string]string
	if inv.runner == "dagger" {
		file, flags = files[moduleConfig], inv.ctor
		if cfg := inv.args["config"]; cfg != "pushdeploy.yaml" {
			return fmt.Errorf("deploy --config %q: the module's default (/pushdeploy.yaml) is the module's own repository when it is called with -m; pass --config pushdeploy.yaml", cfg)
		}
		named = map[string]bool{}
		if v := flags["secrets"]; v != "" {
			for _, s := range strings.Split(v, ",") {
				named[strings.TrimPrefix(s, "env:")] = true
			}
		}
	} else {
		file, flags = files[cliConfig], inv.args
		named = map[string]bool{}
		for name := range c.env {
			named[name] = true // the CLI reads a NAME it is not given from $NAME
		}
		for _, kv := range strings.Split(strings.TrimSpace(inv.args["secret"]), "\n") {
			if n, _, ok := strings.Cut(kv, "="); ok {
				named[n] = true
			}
		}
	}
	env := inv.args["env"]
	e, err := file.Env(env)
	if err != nil {
		return err
	}
	uses, err := file.Secrets(env)
	if err != nil {
		return err
	}
	var problems []string
	for _, u := range uses {
		switch k := u.Ref.Kind(); {
		case k == "name" && !named[u.Ref.Name()] && inv.runner == "dagger":
			problems = append(problems, fmt.Sprintf("secret %q (%s) is not passed in --secrets", u.Ref.Name(), u.Path))
		case k == "name" && !named[u.Ref.Name()]:
			problems = append(problems, fmt.Sprintf("secret %q (%s) is not in the step's environment", u.Ref.Name(), u.Path))
		case k == "env" && inv.runner == "dagger":
			problems = append(problems, fmt.Sprintf("%s is %q, which the module cannot read: name the secret and pass it in --secrets", u.Path, u.Ref))
		case k == "env" && !named[u.Ref.Name()]:
			problems = append(problems, fmt.Sprintf("%s reads $%s, which is not in the step's environment", u.Path, u.Ref.Name()))
		}
	}
	var access *config.SSHAccess
	switch {
	case e.SSH != nil:
		access = &e.SSH.SSHAccess
	case e.Docker != nil:
		access = &e.Docker.SSHAccess
	}
	if access != nil && access.Key == "" && flags["ssh-key"] == "" {
		problems = append(problems, "the file leaves the SSH key to the deploy, which has no --ssh-key")
	}
	if access != nil && access.KnownHosts == "" && flags["known-hosts"] == "" {
		problems = append(problems, "the file leaves known_hosts to the deploy, which has no --known-hosts")
	}
	if e.Kubernetes != nil && e.Kubernetes.Kubeconfig == "" && flags["kubeconfig"] == "" {
		problems = append(problems, "the file leaves the kubeconfig to the deploy, which has no --kubeconfig")
	}
	if p := approvalProblem(c, inv, env, e.Protected); p != "" {
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("deploy --env %s: %s", env, strings.Join(problems, "; "))
	}
	return nil
}

func approvalProblem(c ciCommand, inv *invocation, env string, protected bool) string {
	by, given := inv.args["approved-by"]
	switch {
	case !protected && given:
		return fmt.Sprintf("%q is not protected, but the deploy passes --approved-by", env)
	case !protected:
		return ""
	case by == "":
		return fmt.Sprintf("%q is protected: the deploy needs --approved-by from the CI's approval", env)
	}
	v, ok := strings.CutPrefix(by, "$")
	if !ok || !regexp.MustCompile(`^\w+$`).MatchString(v) {
		return fmt.Sprintf("--approved-by %q: want a variable that the CI's approval sets", by)
	}
	switch c.file {
	case jenkinsFile:
		if v != c.submitter {
			return fmt.Sprintf("--approved-by %q is not the input's submitterParameter %q", by, c.submitter)
		}
	case workflowFile:
		if c.ghEnvironment != env {
			return fmt.Sprintf("deploys %q from a job bound to GitHub environment %q: its reviewers did not approve this", env, c.ghEnvironment)
		}
		if !regexp.MustCompile(`^\$\{\{\s*steps\.\w+\.outputs\.\w+\s*\}\}$`).MatchString(c.env[v]) {
			return fmt.Sprintf("--approved-by %q is not the approval's output (a step that reads the run's approvals), it is %q", by, c.env[v])
		}
	}
	return ""
}

// ---- helpers ----

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q is not in the file", old)
	}
	return strings.Replace(s, old, new, 1)
}

func lineAt(s string, offset int) int { return bytes.Count([]byte(s[:offset]), []byte("\n")) + 1 }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
