package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// moduleFuncs parses the module's files and returns its functions: New and the exported
// methods of *Pushdeploy.
func moduleFuncs(t *testing.T) (*token.FileSet, map[string]*ast.FuncDecl, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*ast.FuncDecl{}
	var parsed []*ast.File
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || strings.HasSuffix(name, ".gen.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !fn.Name.IsExported() {
				continue
			}
			if fn.Recv == nil && fn.Name.Name != "New" {
				continue
			}
			funcs[fn.Name.Name] = fn
		}
	}
	return fset, funcs, parsed
}

// TestDeployLikeFunctionsAreNeverCached: a function that changes a target or a registry,
// or reads their state, must run every time it is called.
func TestDeployLikeFunctionsAreNeverCached(t *testing.T) {
	_, funcs, _ := moduleFuncs(t)
	for _, name := range []string{"Deploy", "Rollback", "Status", "Plan", "History", "Unlock", "Publish", "Promote", "Inspect"} {
		fn, ok := funcs[name]
		if !ok {
			t.Errorf("the module has no %s", name)
			continue
		}
		if fn.Doc == nil || !strings.Contains(fn.Doc.Text(), `+cache="never"`) {
			t.Errorf("%s is not marked +cache=\"never\"", name)
		}
	}
}

// TestEveryArgumentIsDocumented: dagger call --help shows the comment above each argument;
// the pragmas come last.
func TestEveryArgumentIsDocumented(t *testing.T) {
	fset, funcs, files := moduleFuncs(t)
	comments := map[int]*ast.CommentGroup{} // by the line they end on
	for _, f := range files {
		for _, cg := range f.Comments {
			comments[fset.Position(cg.End()).Line] = cg
		}
	}
	for name, fn := range funcs {
		if fn.Doc == nil {
			t.Errorf("%s has no doc comment", name)
		}
		for _, field := range fn.Type.Params.List {
			if sel, ok := field.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Context" {
				continue
			}
			for _, n := range field.Names {
				cg := comments[fset.Position(field.Pos()).Line-1]
				if cg == nil {
					t.Errorf("%s: argument %s has no comment above it", name, n.Name)
					continue
				}
				seenPragma := false
				for _, c := range cg.List {
					text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
					isPragma := strings.HasPrefix(text, "+")
					if seenPragma && !isPragma {
						t.Errorf("%s: argument %s: a comment line after a pragma: %q", name, n.Name, text)
					}
					seenPragma = seenPragma || isPragma
				}
				if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(cg.List[0].Text, "//")), "+") {
					t.Errorf("%s: argument %s has pragmas but no description", name, n.Name)
				}
			}
		}
	}
}
