// Package contract is a recording GraphQL endpoint that stands in for the Dagger engine in
// the module's contract tests. The real SDK is pointed at it (DAGGER_SESSION_PORT and
// DAGGER_SESSION_TOKEN make dagger.Connect use it); it records every query the module's
// functions send and answers with values shaped from the query itself: ids for ids, the
// configured entries, exit codes, outputs and secret values for the leaves that carry them.
//
// A contract test asserts the queries: which images, commands, cache volumes and mounts a
// function asks for, that secrets travel by id and never by value, and in what order
// things are detected. It fails when a function's pipeline changes shape.
package contract

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// Engine is a recording stand-in for the Dagger engine's GraphQL endpoint.
type Engine struct {
	token string

	mu       sync.Mutex
	queries  []string
	entries  []string
	exitCode int
	output   string
	secrets  map[string]string
	leaves   map[string]any
	ids      map[string]string // id handed out -> the chain it stands for
	onExport func(chain, path string) error
	codes    map[string]int    // exit codes by a substring of the chain
	files    map[string]string // File.contents by file name
}

// Option configures the answers.
type Option func(*Engine)

// Entries is what Directory.entries answers. Default: none.
func Entries(names ...string) Option { return func(e *Engine) { e.entries = names } }

// ExitCode is what Container.exitCode answers. Default: 0.
func ExitCode(code int) Option { return func(e *Engine) { e.exitCode = code } }

// ExitCodeFor makes Container.exitCode answer code for chains that contain substr (a
// command, say), and ExitCode's answer for the others.
func ExitCodeFor(substr string, code int) Option { return func(e *Engine) { e.codes[substr] = code } }

// Output is what stdout, stderr and combinedOutput answer. Default: "".
func Output(s string) Option { return func(e *Engine) { e.output = s } }

// Secret makes Secret.plaintext answer value for secrets loaded from uri
// ("env://NAME"). The value is what a function reads inside its own runtime; the test
// asserts it never appears in a query.
func Secret(uri, value string) Option {
	return func(e *Engine) { e.secrets[uri] = value }
}

// OnExport runs fn for every export, with the chain exported and the path, standing in for
// the engine writing the file or directory into the function's filesystem: a test writes
// what the engine would have (an image tarball, an artifact tree).
func OnExport(fn func(chain, path string) error) Option { return func(e *Engine) { e.onExport = fn } }

// FileContents makes File.contents answer data for files loaded from path (host file or a
// module's default path), and File.name answer its base name.
func FileContents(path, data string) Option { return func(e *Engine) { e.files[path] = data } }

// Leaf answers field name with v wherever it is selected as a leaf.
func Leaf(name string, v any) Option { return func(e *Engine) { e.leaves[name] = v } }

// Start serves the endpoint on 127.0.0.1 until the test ends and points the SDK at it
// through the environment.
func Start(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e := &Engine{token: "contract-test-token", secrets: map[string]string{}, leaves: map[string]any{}, ids: map[string]string{}, files: map[string]string{}, codes: map[string]int{}}
	for _, o := range opts {
		o(e)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for the contract engine: %v", err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv("DAGGER_SESSION_PORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	t.Setenv("DAGGER_SESSION_TOKEN", e.token)
	return e
}

// Queries returns every query received so far, in order.
func (e *Engine) Queries() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.queries...)
}

// All is every query joined, for substring assertions.
func (e *Engine) All() string { return strings.Join(e.Queries(), "\n") }

// Reset forgets the queries recorded so far.
func (e *Engine) Reset() {
	e.mu.Lock()
	e.queries = nil
	e.mu.Unlock()
}

func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if user, _, ok := r.BasicAuth(); !ok || user != e.token {
		http.Error(w, "bad session token", http.StatusUnauthorized)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	doc, gerr := parser.ParseQuery(&ast.Source{Input: req.Query})
	if gerr != nil {
		http.Error(w, gerr.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.queries = append(e.queries, req.Query)
	e.mu.Unlock()
	data := map[string]any{}
	for _, op := range doc.Operations {
		e.answer(op.SelectionSet, data, "", chainState{})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

// chainState is what a chain has said so far that a leaf answers from.
type chainState struct {
	uri      string // the secret's uri, when the chain loads one
	contents string // the contents of the last file written with withNewFile
	file     string // its name
}

// answer fills out with a value for every field of set; path names the chain so far.
func (e *Engine) answer(set ast.SelectionSet, out map[string]any, path string, cs chainState) {
	for _, s := range set {
		f, ok := s.(*ast.Field)
		if !ok {
			continue
		}
		key := f.Alias
		if key == "" {
			key = f.Name
		}
		p := path + "." + f.Name + args(f)
		u := cs
		switch f.Name {
		case "secret":
			if a := f.Arguments.ForName("uri"); a != nil {
				u.uri = a.Value.Raw
			}
		case "withNewFile":
			if a := f.Arguments.ForName("contents"); a != nil {
				u.contents = a.Value.Raw
			}
			if a := f.Arguments.ForName("path"); a != nil {
				u.file = a.Value.Raw
			}
		}
		if len(f.SelectionSet) > 0 {
			child := map[string]any{}
			e.answer(f.SelectionSet, child, p, u)
			out[key] = child
			continue
		}
		out[key] = e.leaf(f, p, u)
	}
}

func (e *Engine) leaf(f *ast.Field, path string, cs chainState) any {
	uri := cs.uri
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.leaves[f.Name]; ok {
		return v
	}
	switch f.Name {
	case "id", "sync":
		// Number the chains so that an object passed on by id can be told apart in queries.
		chain := strings.TrimSuffix(path, "."+f.Name)
		for id, c := range e.ids {
			if c == chain {
				return id
			}
		}
		id := fmt.Sprintf("obj%d", len(e.ids)+1)
		e.ids[id] = chain
		return id
	case "entries", "glob":
		return e.entries
	case "exitCode":
		for sub, code := range e.codes {
			if strings.Contains(path, sub) {
				return code
			}
		}
		return e.exitCode
	case "stdout", "stderr", "combinedOutput":
		return e.output
	case "plaintext":
		return e.secrets[uri]
	case "export":
		a := f.Arguments.ForName("path")
		if a == nil {
			return ""
		}
		if e.onExport != nil {
			if err := e.onExport(strings.TrimSuffix(path, "."+f.Name+args(f)), a.Value.Raw); err != nil {
				return "export failed: " + err.Error()
			}
		}
		return a.Value.Raw
	case "contents", "name":
		if f.Name == "name" && uri != "" {
			return uri
		}
		if cs.file != "" {
			if f.Name == "name" {
				return cs.file[strings.LastIndex(cs.file, "/")+1:]
			}
			return cs.contents
		}
		for p, data := range e.files {
			if strings.Contains(path, `"`+p+`"`) {
				if f.Name == "name" {
					return p[strings.LastIndex(p, "/")+1:]
				}
				return data
			}
		}
		return ""
	case "endpoint":
		return "127.0.0.1:0"
	}
	return ""
}

func args(f *ast.Field) string {
	if len(f.Arguments) == 0 {
		return ""
	}
	var b []string
	for _, a := range f.Arguments {
		b = append(b, a.Name+":"+a.Value.String())
	}
	sort.Strings(b)
	return "(" + strings.Join(b, ", ") + ")"
}

var idRef = regexp.MustCompile(`"obj[0-9]+"`)

// Expand replaces the ids in a query with the chains they stand for, "{.directory}", so
// that a query reads whole.
func (e *Engine) Expand(q string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; i < 8 && idRef.MatchString(q); i++ {
		q = idRef.ReplaceAllStringFunc(q, func(m string) string {
			if c, ok := e.ids[strings.Trim(m, `"`)]; ok {
				return "{" + c + "}"
			}
			return m
		})
	}
	return q
}

// Transcript is every query received so far that asks for more than an id (ids are asked
// for concurrently, and the chains they stand for show where they are used), each in a
// canonical form (arguments sorted by name), ids expanded, one a line: what a golden file
// holds and what assertions search.
func (e *Engine) Transcript() string {
	var b strings.Builder
	for _, q := range e.Queries() {
		c, leaf := canonical(q)
		if leaf == "id" {
			continue
		}
		b.WriteString(e.Expand(c))
		b.WriteString("\n")
	}
	return b.String()
}

// canonical prints a query as the chain of calls it is, ".container.from(address:...)
// .withExec(args:[...]).stdout", arguments sorted by name (the SDK's order varies), and
// names its leaf. A selection of several fields prints as {a b}.
func canonical(q string) (string, string) {
	doc, err := parser.ParseQuery(&ast.Source{Input: q})
	if err != nil || len(doc.Operations) == 0 {
		return q, ""
	}
	var b strings.Builder
	leaf := ""
	var walk func(set ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		var fields []*ast.Field
		for _, s := range set {
			if f, ok := s.(*ast.Field); ok {
				fields = append(fields, f)
			}
		}
		if len(fields) > 1 {
			b.WriteString("{")
		}
		for i, f := range fields {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString("." + f.Name + args(f))
			if len(f.SelectionSet) > 0 {
				walk(f.SelectionSet)
			} else if leaf == "" {
				leaf = f.Name
			}
		}
		if len(fields) > 1 {
			b.WriteString("}")
		}
	}
	walk(doc.Operations[0].SelectionSet)
	return b.String(), leaf
}

// Env reports the session variables, for a subprocess.
func (e *Engine) Env() []string {
	return []string{"DAGGER_SESSION_PORT=" + os.Getenv("DAGGER_SESSION_PORT"), "DAGGER_SESSION_TOKEN=" + e.token}
}
