package e2e

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// docFiles hold the dagger commands users copy. The minimal CI files of examples/ci hold
// none any more (they call the reusable workflow and the Jenkins library); the commands of
// the action (scripts/action-run) and the library are checked against the module's
// functions and flags by examples/ci's TestCommandsExist.
var docFiles = []string{"../README.md"}

// TestReadmeCommandsRan keeps the documentation to what works: every function and flag that
// a dagger call command of README.md uses must have been used by a dagger call of this
// suite that succeeded. It runs last (its file sorts last) and needs the whole
// suite: with -run selecting less, it skips.
func TestReadmeCommandsRan(t *testing.T) {
	needEngine(t)
	if f := flagRun(); f != "" {
		t.Skipf("-run %q selects part of the suite: the documentation is checked against a whole run", f)
	}
	printed.Lock()
	defer printed.Unlock()
	var missing []string
	for _, file := range docFiles {
		for _, cmd := range docCommands(t, file) {
			for _, u := range uses(cmd) {
				if !ran[u] {
					missing = append(missing, file+": "+u)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the documentation uses functions and flags no dagger call of the suite ran:\n%s", strings.Join(dedupe(missing), "\n"))
	}
}

// docCommands extracts the dagger call commands of a documentation file: lines that start
// with dagger (or $PD, the README's shorthand for it; in Markdown only inside code blocks),
// joined over trailing backslashes, split into words with their quotes removed.
func docCommands(t *testing.T, file string) [][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pd := ""
	var cmds [][]string
	lines := strings.Split(string(b), "\n")
	word := regexp.MustCompile(`"[^"]*"|'[^']*'|\$\([^)]*\)|\S+`)
	markdown, fenced := strings.HasSuffix(file, ".md"), false
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if markdown && !fenced {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		if m := regexp.MustCompile(`^PD="(dagger .*)"$`).FindStringSubmatch(line); m != nil {
			pd = m[1]
			continue
		}
		if pd != "" && strings.HasPrefix(line, "$PD ") {
			line = pd + strings.TrimPrefix(line, "$PD")
		}
		if !strings.HasPrefix(line, "dagger ") || !strings.Contains(line, " call ") {
			continue
		}
		var words []string
		for _, w := range word.FindAllString(line, -1) {
			words = append(words, strings.Trim(w, `"'`))
		}
		cmds = append(cmds, words)
	}
	if len(cmds) == 0 {
		t.Errorf("%s: no dagger call command found", file)
	}
	return cmds
}

func flagRun() string {
	for i, a := range os.Args {
		if strings.HasPrefix(a, "-test.run=") {
			return strings.TrimPrefix(a, "-test.run=")
		}
		if a == "-test.run" && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return ""
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
