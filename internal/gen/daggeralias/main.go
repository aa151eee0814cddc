// Command daggeralias writes the two files that `dagger develop` would generate for this
// module, as a thin layer over the published SDK (dagger.io/dagger), for machines where no
// Dagger engine can run codegen:
//
//   - internal/dagger/dagger.gen.go: one alias per exported type, function, constant and
//     variable of the SDK (`type Container = sdk.Container`), so the module's code imports
//     the same package path the real bindings use;
//   - dagger.gen.go (package main): `var dag` and a `main`.
//
// Loading the module with a real engine (`dagger develop`, `dagger call`) overwrites both.
// Run it with `go generate ./...` from the repository root.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

const sdkPath = "dagger.io/dagger"

func main() {
	out := flag.String("out", ".", "repository root to write the files into")
	flag.Parse()
	dir, version, err := sdkDir()
	if err != nil {
		log.Fatalf("finding %s: %v", sdkPath, err)
	}
	decls, err := exported(dir)
	if err != nil {
		log.Fatalf("reading %s: %v", sdkPath, err)
	}
	if err := write(filepath.Join(*out, "internal", "dagger", "dagger.gen.go"), aliasFile(decls, version)); err != nil {
		log.Fatal(err)
	}
	if err := write(filepath.Join(*out, "dagger.gen.go"), mainFile(version)); err != nil {
		log.Fatal(err)
	}
}

// sdkDir asks the go command where the SDK's source lives for this module's go.mod.
func sdkDir() (dir, version string, err error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", sdkPath).Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m %s: %w", sdkPath, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "" {
		return "", "", fmt.Errorf("go list -m %s printed %q; run go mod download first", sdkPath, b)
	}
	return f[0], f[1], nil
}

// decl is one exported name of the SDK and what kind of declaration it is.
type decl struct {
	kind    string // "type", "func", "generic", "const", "var"
	name    string
	tparams string // type parameter list of a generic type, with constraints, "" otherwise
	targs   string // its type arguments, "" otherwise
	wrapper string // a generic function's wrapper, whole (generic functions cannot be aliased)
	imports []string
}

// exported lists the SDK package's exported top-level names, sorted, skipping tests.
func exported(dir string) ([]decl, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	pkg, ok := pkgs["dagger"]
	if !ok {
		return nil, fmt.Errorf("no package dagger in %s", dir)
	}
	types := map[string]bool{}
	for _, f := range pkg.Files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					types[s.(*ast.TypeSpec).Name.Name] = true
				}
			}
		}
	}
	var out []decl
	for _, f := range pkg.Files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					if d.Type.TypeParams != nil {
						out = append(out, genericWrapper(fset, f, d, types))
						continue
					}
					out = append(out, decl{kind: "func", name: d.Name.Name})
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							tp, ta := typeParams(fset, s)
							out = append(out, decl{kind: "type", name: s.Name.Name, tparams: tp, targs: ta})
						}
					case *ast.ValueSpec:
						kind := "var"
						if d.Tok == token.CONST {
							kind = "const"
						}
						for _, n := range s.Names {
							if n.IsExported() {
								out = append(out, decl{kind: kind, name: n.Name})
							}
						}
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].kind != out[j].kind {
			return out[i].kind < out[j].kind
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// genericWrapper writes a function that calls the SDK's generic function of the same
// signature, with the SDK's own type names qualified.
func genericWrapper(fset *token.FileSet, f *ast.File, d *ast.FuncDecl, types map[string]bool) decl {
	ft := d.Type
	tparams := map[string]bool{}
	for _, fl := range ft.TypeParams.List {
		for _, n := range fl.Names {
			tparams[n.Name] = true
		}
	}
	// Name unnamed parameters so the body can pass them on.
	var args, targs []string
	for i, fl := range ft.Params.List {
		if len(fl.Names) == 0 {
			fl.Names = []*ast.Ident{ast.NewIdent(fmt.Sprintf("p%d", i))}
		}
		for _, n := range fl.Names {
			arg := n.Name
			if _, ok := fl.Type.(*ast.Ellipsis); ok {
				arg += "..."
			}
			args = append(args, arg)
		}
	}
	for _, fl := range ft.TypeParams.List {
		for _, n := range fl.Names {
			targs = append(targs, n.Name)
		}
	}
	used := map[string]bool{}
	qualified := qualify(ft, func(id *ast.Ident) ast.Expr {
		if types[id.Name] && !tparams[id.Name] {
			return &ast.SelectorExpr{X: ast.NewIdent("sdk"), Sel: ast.NewIdent(id.Name)}
		}
		return id
	}, used).(*ast.FuncType)
	var sig bytes.Buffer
	_ = format.Node(&sig, fset, &ast.FuncDecl{Name: d.Name, Type: qualified})
	ret := "return "
	if ft.Results == nil {
		ret = ""
	}
	w := fmt.Sprintf("%s {\n\t%ssdk.%s[%s](%s)\n}\n", sig.String(), ret, d.Name.Name,
		strings.Join(targs, ", "), strings.Join(args, ", "))
	var imports []string
	for _, im := range f.Imports {
		p := strings.Trim(im.Path.Value, `"`)
		name := filepath.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		if used[name] {
			imports = append(imports, p)
		}
	}
	return decl{kind: "generic", name: d.Name.Name, wrapper: w, imports: imports}
}

// qualify copies what it needs of a type expression, rewriting identifiers with fn and
// noting the package names of selectors in used.
func qualify(n ast.Node, fn func(*ast.Ident) ast.Expr, used map[string]bool) ast.Node {
	switch n := n.(type) {
	case *ast.Ident:
		return fn(n)
	case *ast.SelectorExpr:
		if x, ok := n.X.(*ast.Ident); ok {
			used[x.Name] = true
		}
		return n
	case *ast.StarExpr:
		return &ast.StarExpr{X: qualify(n.X, fn, used).(ast.Expr)}
	case *ast.ArrayType:
		return &ast.ArrayType{Len: n.Len, Elt: qualify(n.Elt, fn, used).(ast.Expr)}
	case *ast.MapType:
		return &ast.MapType{Key: qualify(n.Key, fn, used).(ast.Expr), Value: qualify(n.Value, fn, used).(ast.Expr)}
	case *ast.Ellipsis:
		return &ast.Ellipsis{Elt: qualify(n.Elt, fn, used).(ast.Expr)}
	case *ast.IndexExpr:
		return &ast.IndexExpr{X: qualify(n.X, fn, used).(ast.Expr), Index: qualify(n.Index, fn, used).(ast.Expr)}
	case *ast.IndexListExpr:
		var idx []ast.Expr
		for _, e := range n.Indices {
			idx = append(idx, qualify(e, fn, used).(ast.Expr))
		}
		return &ast.IndexListExpr{X: qualify(n.X, fn, used).(ast.Expr), Indices: idx}
	case *ast.FuncType:
		out := &ast.FuncType{}
		if n.TypeParams != nil {
			out.TypeParams = qualify(n.TypeParams, fn, used).(*ast.FieldList)
		}
		out.Params = qualify(n.Params, fn, used).(*ast.FieldList)
		if n.Results != nil {
			out.Results = qualify(n.Results, fn, used).(*ast.FieldList)
		}
		return out
	case *ast.FieldList:
		out := &ast.FieldList{}
		for _, f := range n.List {
			out.List = append(out.List, &ast.Field{Names: f.Names, Type: qualify(f.Type, fn, used).(ast.Expr)})
		}
		return out
	default:
		return n
	}
}

// typeParams renders a generic type's parameter list (qualifying the SDK's own names) and
// the matching argument list.
func typeParams(fset *token.FileSet, s *ast.TypeSpec) (string, string) {
	if s.TypeParams == nil {
		return "", ""
	}
	var params, args []string
	for _, f := range s.TypeParams.List {
		var b bytes.Buffer
		_ = format.Node(&b, fset, f.Type)
		for _, n := range f.Names {
			params = append(params, n.Name+" "+b.String())
			args = append(args, n.Name)
		}
	}
	return "[" + strings.Join(params, ", ") + "]", "[" + strings.Join(args, ", ") + "]"
}

func aliasFile(decls []decl, version string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `// Code generated by internal/gen/daggeralias from %s %s. DO NOT EDIT.
//
// This is a stand-in for the bindings that `+"`dagger develop`"+` generates: every exported name
// of the published Go SDK, aliased, so that the module compiles and is tested on machines
// where no Dagger engine can run codegen. Loading the module with a real engine replaces this
// file with the real generated client; no other file may live in this package.

package dagger

import (
`, sdkPath, version)
	imports := map[string]bool{sdkPath: true}
	for _, d := range decls {
		for _, p := range d.imports {
			imports[p] = true
		}
	}
	var paths []string
	for p := range imports {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if p == sdkPath {
			fmt.Fprintf(&b, "\tsdk %q\n", p)
		} else {
			fmt.Fprintf(&b, "\t%q\n", p)
		}
	}
	b.WriteString(")\n\n")
	for _, d := range decls {
		switch d.kind {
		case "type":
			fmt.Fprintf(&b, "type %s%s = sdk.%s%s\n", d.name, d.tparams, d.name, d.targs)
		case "func":
			fmt.Fprintf(&b, "var %s = sdk.%s\n", d.name, d.name)
		case "generic":
			b.WriteString("\n" + d.wrapper + "\n")
		case "const":
			fmt.Fprintf(&b, "const %s = sdk.%s\n", d.name, d.name)
		case "var":
			fmt.Fprintf(&b, "var %s = sdk.%s // a copy: variables cannot be aliased\n", d.name, d.name)
		}
	}
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatalf("formatting the alias file: %v\n%s", err, b.Bytes())
	}
	return src
}

func mainFile(version string) []byte {
	src, err := format.Source([]byte(fmt.Sprintf(`// Code generated by internal/gen/daggeralias from %s %s. DO NOT EDIT.
//
// A stand-in for the entry point that `+"`dagger develop`"+` generates. The real one
// connects to the engine and dispatches function calls to the module object; this one only
// holds the client that the module's functions use, set by the contract tests (which point
// the SDK at a recording GraphQL endpoint) or by main below. Loading the module with a real
// engine replaces this file.

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
)

// dag is the engine client every function of the module builds its pipeline with.
var dag *dagger.Client

func main() {
	c, err := dagger.Connect(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushdeploy: connecting to the Dagger engine:", err)
		os.Exit(1)
	}
	dag = c
	defer c.Close()
	fmt.Fprintln(os.Stderr, "pushdeploy: this binary is built from the stand-in bindings; run it with `+"`dagger call`"+`, which generates the real entry point")
	os.Exit(2)
}
`, sdkPath, version)))
	if err != nil {
		log.Fatalf("formatting the main file: %v", err)
	}
	return src
}

func write(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
