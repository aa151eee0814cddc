package config_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// The Dagger module's WithEnvironment takes the settings as explicit arguments (Dagger reads the Go
// signature), so they are written out there; these tests hold them to config.Settings.

var update = flag.Bool("update", false, "rewrite testdata/module_settings.go.txt from config.Settings")

const moduleGolden = "testdata/module_settings.go.txt"

// param is the module parameter of a setting: "health-url" is healthUrl, as dagger call
// spells it --health-url.
func param(flag string) string {
	parts := strings.Split(flag, "-")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

func goType(field string) string {
	f, _ := reflect.TypeFor[config.Settings]().FieldByName(field)
	return f.Type.String()
}

// moduleBlock is the Go source the module's WithEnvironment takes the settings with: the parameters
// (a comment above each, the pragma last) and the Settings literal that builds the File.
func moduleBlock() []byte {
	var b bytes.Buffer
	b.WriteString("// Generated from config.Settings by go test ./pipeline/config -run TestModuleSettingsGolden -update.\n")
	b.WriteString("// The parameters, after WithEnvironment's own (env is one of them already):\n\n")
	for _, sf := range config.SettingFields() {
		if sf.Own {
			continue
		}
		for _, line := range wrap(sf.Help, 88) {
			fmt.Fprintf(&b, "\t// %s\n", line)
		}
		fmt.Fprintf(&b, "\t// +optional\n\t%s %s,\n", param(sf.Flag), goType(sf.Field))
	}
	b.WriteString("\n// The File from them, in WithEnvironment's body (settings = config.Settings; the\n")
	b.WriteString("// environment's name comes from the function that deploys):\n\n")
	var lit bytes.Buffer
	lit.WriteString("package p\nvar _ = settings{\n")
	for _, sf := range config.SettingFields() {
		if sf.Own {
			continue
		}
		fmt.Fprintf(&lit, "%s: %s,\n", sf.Field, param(sf.Flag))
	}
	lit.WriteString("}\n")
	src, err := format.Source(lit.Bytes())
	if err != nil {
		panic(err)
	}
	b.Write(bytes.TrimPrefix(src, []byte("package p\n\nvar _ = ")))
	return b.Bytes()
}

func wrap(s string, width int) []string {
	var lines []string
	var cur string
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	return append(lines, cur)
}

func TestModuleSettingsGolden(t *testing.T) {
	got := moduleBlock()
	if *update {
		if err := os.WriteFile(moduleGolden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(moduleGolden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: go test ./pipeline/config -run TestModuleSettingsGolden -update", moduleGolden)
	}
	// The block, pasted into a WithEnvironment, passes the check the module's own one gets.
	if problems := checkDeploy(t, deployWith(t, want)); len(problems) > 0 {
		t.Errorf("the golden block does not pass:\n%s", strings.Join(problems, "\n"))
	}
}

// deployWith is a module source whose WithEnvironment takes the golden block's parameters.
func deployWith(t *testing.T, golden []byte) string {
	t.Helper()
	params, lit, ok := strings.Cut(string(golden), "\n// The File from them")
	if !ok {
		t.Fatalf("%s: no literal", moduleGolden)
	}
	_, lit, _ = strings.Cut(lit, "\n\n")
	return "package main\n\nfunc (m *Pushdeploy) WithEnvironment(\n\tctx context.Context,\n\t// The environment.\n\tenv string,\n" +
		params + "\n) (string, error) {\n\tf, err := fromSettings(" + strings.TrimSpace(lit) + ")\n\t_, _ = f, err\n\treturn \"\", nil\n}\n"
}

func TestModuleSettingsCheckFails(t *testing.T) {
	golden, err := os.ReadFile(moduleGolden)
	if err != nil {
		t.Fatal(err)
	}
	src := deployWith(t, golden)
	src = strings.Replace(src, "\t// The wait between health attempts, e.g. 2s. Default: 1s.\n\t// +optional\n\thealthInterval string,\n", "", 1)
	src = strings.Replace(src, "memory string", "memory int", 1)
	src = strings.Replace(src, "Keep:            keep,", "Keep: healthRetries,", 1)
	src = strings.Replace(src, "// The network the container joins", "// The network", 1)
	problems := checkDeploy(t, src)
	want := []string{
		`WithEnvironment's network comment is "The network, e.g. host (docker). Default: Docker's bridge.", the help of --network is "The network the container joins, e.g. host (docker). Default: Docker's bridge."`,
		`WithEnvironment's memory is int, Settings.Memory is string`,
		`WithEnvironment takes no healthInterval for --health-interval`,
		`WithEnvironment's settings literal sets Keep to healthRetries, not keep`,
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// TestModuleDeployTakesSettings holds the module's WithEnvironment (environment.go at the repository's
// root) to config.Settings once it takes them.
func TestModuleDeployTakesSettings(t *testing.T) {
	src, err := os.ReadFile("../../environment.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("healthUrl ")) {
		t.Fatal("the module's WithEnvironment does not take the settings: add the block of " + moduleGolden)
	}
	if problems := checkDeploy(t, string(src)); len(problems) > 0 {
		t.Errorf("the module's WithEnvironment and config.Settings differ:\n%s", strings.Join(problems, "\n"))
	}
}

// checkDeploy compares WithEnvironment's parameters in src with config.Settings: each setting a
// parameter of the same type, with the help as its comment and the pragma +optional (but
// for the commands' own, such as env), and a literal of Settings that passes each.
func checkDeploy(t *testing.T, src string) []string {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "deploy.go", src, parser.ParseComments)
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	var fn *ast.FuncDecl
	for _, d := range file.Decls {
		if f, ok := d.(*ast.FuncDecl); ok && f.Name.Name == "WithEnvironment" && f.Recv != nil {
			fn = f
		}
	}
	if fn == nil {
		t.Fatal("no method WithEnvironment")
	}
	type p struct {
		typ      string
		comment  []string
		optional bool
	}
	params := map[string]p{}
	for _, field := range fn.Type.Params.List {
		var b bytes.Buffer
		format.Node(&b, fset, field.Type)
		var pp p
		pp.typ = b.String()
		// The comment is the group that ends on the line above the parameter.
		line := fset.Position(field.Pos()).Line
		for _, cg := range file.Comments {
			if fset.Position(cg.End()).Line == line-1 {
				for _, c := range cg.List {
					text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
					switch {
					case text == "+optional":
						pp.optional = true
					case strings.HasPrefix(text, "+"):
					default:
						pp.comment = append(pp.comment, text)
					}
				}
			}
		}
		for _, n := range field.Names {
			params[n.Name] = pp
		}
	}
	var problems []string
	for _, sf := range config.SettingFields() {
		if sf.Own {
			continue // the environment's name comes from the function that deploys
		}
		name := param(sf.Flag)
		pp, ok := params[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("WithEnvironment takes no %s for --%s", name, sf.Flag))
			continue
		case pp.typ != goType(sf.Field):
			problems = append(problems, fmt.Sprintf("WithEnvironment's %s is %s, Settings.%s is %s", name, pp.typ, sf.Field, goType(sf.Field)))
		}
		if sf.Own {
			continue
		}
		if got := strings.Join(pp.comment, " "); got != sf.Help {
			problems = append(problems, fmt.Sprintf("WithEnvironment's %s comment is %q, the help of --%s is %q", name, got, sf.Flag, sf.Help))
		}
		if !pp.optional {
			problems = append(problems, fmt.Sprintf("WithEnvironment's %s is not +optional", name))
		}
	}
	// The literal: settings{...} or config.Settings{...}, each field from its parameter.
	var lit *ast.CompositeLit
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if cl, ok := n.(*ast.CompositeLit); ok {
			var b bytes.Buffer
			format.Node(&b, fset, cl.Type)
			if s := b.String(); s == "settings" || s == "config.Settings" {
				lit = cl
			}
		}
		return lit == nil
	})
	if lit == nil {
		return append(problems, "WithEnvironment builds no settings{...} literal")
	}
	set := map[string]string{}
	for _, e := range lit.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			var v bytes.Buffer
			format.Node(&v, fset, kv.Value)
			set[kv.Key.(*ast.Ident).Name] = v.String()
		}
	}
	for _, sf := range config.SettingFields() {
		if sf.Own {
			continue
		}
		if got, want := set[sf.Field], param(sf.Flag); got != want {
			problems = append(problems, fmt.Sprintf("WithEnvironment's settings literal sets %s to %s, not %s", sf.Field, or(got, "nothing"), want))
		}
	}
	return slices.Compact(problems)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
