// Package ci holds the CI examples for an application repository (github-actions.yml, the
// minimal workflow over the reusable .github/workflows/deploy.yml and the composite
// action.yml; Jenkinsfile, over the shared library vars/pushdeploy.groovy) and the tests that
// keep them and what they call true: actionlint finds nothing in any workflow; every dagger
// call and pushdeploy command of the action, the workflows and the library names a
// function, argument, command or flag that exists and passes secrets as references; every
// deploy passes the secrets its environments file names and takes --approved-by from the
// CI's own approval; the release builds (goreleaser), the Groovy lints (npm-groovy-lint),
// and the minimal workflow runs under act against real sshd hosts.
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
	"sigs.k8s.io/yaml"
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

// TestActionlintCatchesMistakes makes sure the lint can fail: the reusable workflow with
// one mistake each must not lint clean.
func TestActionlintCatchesMistakes(t *testing.T) {
	src := string(read(t, reusableFile))
	for _, c := range []struct{ name, old, new, want string }{
		{"unknown context property", "steps.approval.outputs.by", "steps.aproval.outputs.by", "aproval"},
		{"needs an unknown job", "needs: staging\n", "needs: stagin\n", "stagin"},
		{"unknown action input", "comment_mode:", "coment_mode:", "coment_mode"},
		{"unknown permission", "actions: read # to read", "action: read # to read", "action"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := replaceOnce(t, src, c.old, c.new)
			errs := lint(t, reusableFile, []byte(bad))
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
		actionScript: {"pushdeploy deploy approved", "pushdeploy rollback", "pushdeploy plan",
			"pushdeploy status", "pushdeploy history", "pushdeploy check",
			"dagger deploy approved", "dagger rollback", "dagger plan", "dagger status", "dagger history", "dagger check",
			"dagger test export"},
		libraryFile: {"dagger test export", "dagger deploy approved"},
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

// TestNoSecretInScripts: the workflows' run: scripts never expand a secret themselves (they
// read it from env:), and the Jenkins files' sh steps are single-quoted, so that Groovy never
// interpolates a credential into the script.
func TestNoSecretInScripts(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(workflowsDir, "*.yml"))
	for _, f := range append(files, workflowFile, jenkinsFile, libraryFile) {
		if err := secretInScripts(f, string(read(t, f))); err != nil {
			t.Error(err)
		}
	}
	bad := []struct{ name, src string }{
		{workflowFile, "jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ secrets.SSH_KEY }}\n"},
		{jenkinsFile, "sh \"dagger call --token $TOKEN\"\n"},
		{libraryFile, "sh(returnStdout: true, script: \"\"\"\n echo $TOKEN\n\"\"\")\n"},
	}
	for _, b := range bad {
		if secretInScripts(b.name, b.src) == nil {
			t.Errorf("%s: %q accepted", b.name, b.src)
		}
	}
}

func secretInScripts(name, src string) error {
	if name == jenkinsFile || name == libraryFile {
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
	// The action's script: the commands it runs for every function and mode. Its
	// environment is the run step's env: in action.yml.
	cmds = append(cmds, actionCommands(t, string(read(t, actionScript)))...)
	files, _ := filepath.Glob(filepath.Join(workflowsDir, "*.yml"))
	for _, file := range append(files, workflowFile) {
		src := read(t, file)
		wf, errs := actionlint.Parse(src)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", file, errs[0])
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
				cmds = append(cmds, commandsIn(t, file, line, r.Run.Value, env)...)
			}
		}
	}
	cmds = append(cmds, jenkinsCommands(t, libraryFile, string(read(t, libraryFile)))...)
	return append(cmds, jenkinsCommands(t, jenkinsFile, string(read(t, jenkinsFile)))...)
}

// actionCommands returns the commands of the action's script: its environment is the run
// step's env: in action.yml, and it can expand that, GitHub's variables and its own.
func actionCommands(t *testing.T, script string) []ciCommand {
	t.Helper()
	env := actionStepEnv(t)
	defined := map[string]bool{}
	for name := range env {
		defined[name] = true
	}
	f, err := syntax.NewParser().Parse(strings.NewReader(script), actionScript)
	if err != nil {
		t.Fatalf("%s: %v", actionScript, err)
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		if a, ok := n.(*syntax.Assign); ok && a.Name != nil {
			defined[a.Name.Value] = true
		}
		return true
	})
	cmds := commandsIn(t, actionScript, 1, script, env)
	for i := range cmds {
		cmds[i].defined = defined
	}
	return cmds
}

// actionStepEnv is the env: of action.yml's step that runs scripts/action-run.
func actionStepEnv(t *testing.T) map[string]string {
	t.Helper()
	var md struct {
		Runs struct {
			Steps []struct {
				Run string            `json:"run"`
				Env map[string]string `json:"env"`
			} `json:"steps"`
		} `json:"runs"`
	}
	if err := yaml.Unmarshal(read(t, actionFile), &md); err != nil {
		t.Fatalf("%s: %v", actionFile, err)
	}
	for _, s := range md.Runs.Steps {
		if strings.Contains(s.Run, "scripts/action-run") {
			return s.Env
		}
	}
	t.Fatalf("%s: no step runs scripts/action-run", actionFile)
	return nil
}

// jenkinsCommands returns the dagger and pushdeploy commands of a Groovy file's sh steps.
func jenkinsCommands(t *testing.T, file, jf string) []ciCommand {
	t.Helper()
	var cmds []ciCommand
	for _, m := range shScript.FindAllStringSubmatchIndex(jf, -1) {
		body := jf[m[2]:m[3]]
		// Groovy's triple-single-quoted strings: a backslash before a newline joins the
		// lines, \\ is one backslash.
		body = strings.ReplaceAll(body, "\\\n", "")
		body = strings.ReplaceAll(body, `\\`, `\`)
		defined := jenkinsVariables(jf, m[0])
		for _, c := range commandsIn(t, file, lineAt(jf, m[2]), body, nil) {
			c.defined = defined
			cmds = append(cmds, c)
		}
	}
	return cmds
}

var shScript = regexp.MustCompile(`(?s)\bsh\b\s*(?:\(\s*(?:[A-Za-z]+\s*:\s*[^,)]+,\s*)*(?:script\s*:\s*)?)?'''(.*?)'''`)

// commandsIn parses a shell script and returns its dagger and pushdeploy commands, also
// those inside command substitutions. An array expanded whole ("${opts[@]}", or "$@" after
// set --) stands for every word any assignment of the script gives it, as if every
// condition that adds words held.
func commandsIn(t *testing.T, file string, line int, script string, env map[string]string) []ciCommand {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), file)
	if err != nil {
		t.Fatalf("%s:%d: the shell script does not parse: %v", file, line, err)
	}
	arrays := map[string][]string{}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.Assign:
			if n.Array != nil && n.Name != nil {
				for _, e := range n.Array.Elems {
					if e.Value != nil {
						arrays[n.Name.Value] = append(arrays[n.Name.Value], render(e.Value.Parts))
					}
				}
			}
		case *syntax.CallExpr:
			if len(n.Args) > 1 && n.Args[0].Lit() == "set" && n.Args[1].Lit() == "--" {
				for _, w := range n.Args[2:] {
					if r := render(w.Parts); r != "$@" {
						arrays["@"] = append(arrays["@"], r)
					}
				}
			}
		}
		return true
	})
	var out []ciCommand
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		var words []string
		for _, w := range call.Args {
			r := render(w.Parts)
			if name, ok := wholeArray(w); ok {
				words = append(words, arrays[name]...)
				continue
			}
			words = append(words, r)
		}
		if words[0] == "dagger" || words[0] == "pushdeploy" {
			out = append(out, ciCommand{file: file, args: words, env: env,
				where: fmt.Sprintf("%s:%d", file, line+int(call.Pos().Line())-1)})
		}
		return true
	})
	return out
}

// wholeArray says whether a word is "${name[@]}" or "$@", and which array.
func wholeArray(w *syntax.Word) (string, bool) {
	if len(w.Parts) != 1 {
		return "", false
	}
	dq, ok := w.Parts[0].(*syntax.DblQuoted)
	if !ok || len(dq.Parts) != 1 {
		return "", false
	}
	p, ok := dq.Parts[0].(*syntax.ParamExp)
	if !ok {
		return "", false
	}
	if p.Param.Value == "@" {
		return "@", true
	}
	if p.Index != nil {
		if w, ok := p.Index.(*syntax.Word); ok && w.Lit() == "@" {
			return p.Param.Value, true
		}
	}
	return "", false
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
	if c.file == actionScript || c.file == libraryFile {
		// The wrappers' credentials reach their commands as $NAME_REF: the action's
		// inputs, which its script refuses unless they are env:NAME or file:PATH before
		// anything runs (TestActionRefusesSecretValues), and the env:NAME lists both build
		// from variable names.
		args := slices.Clone(c.args)
		for i, a := range args {
			if v, ok := strings.CutPrefix(a, "$"); ok && regexp.MustCompile(`^[A-Z_]+_REF$`).MatchString(v) {
				args[i] = "env:CHECKED_BY_THE_SCRIPT"
			}
		}
		c.args = args
	}
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
		if env := inv.args["env"]; !strings.HasPrefix(env, "$") {
			s += " " + env
		}
		if inv.args["approved-by"] != "" {
			s += " approved"
		}
	case inv.function == "test" && slices.Contains(c.args, "export"):
		s += " export"
	}
	return s
}

// TestVariablesAreDefined: every $NAME and env:NAME a command uses is set where it runs: in
// the action's script by its step's env: or the script itself; in a workflow by the step's
// env (or GitHub's defaults); in the Jenkins library by withEnv, the step's withCredentials,
// or Jenkins itself.
func TestVariablesAreDefined(t *testing.T) {
	cmds := ciCommands(t)
	for _, c := range cmds {
		if err := undefinedVariables(c); err != nil {
			t.Errorf("%s: %v", c.where, err)
		}
	}
	script, lib := string(read(t, actionScript)), string(read(t, libraryFile))
	for _, c := range []struct{ file, old, new string }{
		{actionScript, `--approved-by "$APPROVED_BY"`, `--approved-by "$APPROVED"`},
		{actionScript, `--ssh-key "$SSH_KEY_REF"`, `--ssh-key "$SSH_KEY_REFS"`},
		{libraryFile, `--approved-by "$APPROVER"`, `--approved-by "$APPROVR"`},
		{libraryFile, `"file:$SSH_KEY_FILE"`, `"file:$SSH_KEY_PATH"`},
		{libraryFile, "keyFileVariable: 'SSH_KEY_FILE'", "keyFileVariable: 'SSH_KEYFILE'"},
	} {
		var bad []ciCommand
		if c.file == libraryFile {
			bad = jenkinsCommands(t, libraryFile, replaceOnce(t, lib, c.old, c.new))
		} else {
			bad = actionCommands(t, replaceOnce(t, script, c.old, c.new))
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
			case c.file == jenkinsFile || c.file == libraryFile || c.file == actionScript:
				if !c.defined[name] && (c.file != actionScript || !strings.HasPrefix(name, "GITHUB_")) {
					missing = append(missing, name)
				}
			case c.env[name] != "" || strings.HasPrefix(name, "GITHUB_") || strings.HasPrefix(name, "RUNNER_"):
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
	// The stage's (or the library step's) own credentials, input and withEnv.
	stage := before[max(0, strings.LastIndex(before, "stage("), strings.LastIndex(before, "\ndef ")):]
	for _, a := range regexp.MustCompile(`"([A-Z_][A-Z0-9_]*)=`).FindAllStringSubmatch(stage, -1) {
		defined[a[1]] = true
	}
	for _, a := range regexp.MustCompile(`(?:variable|keyFileVariable|usernameVariable|passphraseVariable|submitterParameter)\s*:?\s*'(\w+)'`).FindAllStringSubmatch(stage, -1) {
		defined[a[1]] = true
	}
	return defined
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
