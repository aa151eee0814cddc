// Package configschema generates the JSON Schema of pushdeploy.yaml from the Go types of
// pipeline/config, with their doc comments as descriptions. The generator command
// (internal/gen/configschema, run by go generate ./pipeline/config) writes it to
// schema/pushdeploy.schema.json; pipeline/config's tests compare the two.
package configschema

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// ID is the schema's $id.
const ID = "https://github.com/pushdeploy/pushdeploy/schema/pushdeploy.schema.json"

// Generate returns the schema, indented, with a trailing newline. srcDir is the directory
// of package pipeline/config, whose comments become the descriptions.
func Generate(srcDir string) ([]byte, error) {
	comments, err := docComments(srcDir)
	if err != nil {
		return nil, fmt.Errorf("reading the comments of %s: %w", srcDir, err)
	}
	pkg := reflect.TypeFor[config.File]().PkgPath()
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Anonymous:                  true,
		LookupComment: func(t reflect.Type, field string) string {
			if t.PkgPath() != pkg {
				return ""
			}
			if field == "" {
				return comments[t.Name()]
			}
			return comments[t.Name()+"."+field]
		},
	}
	s := r.Reflect(&config.File{})
	s.ID = ID
	s.Title = "pushdeploy.yaml"
	// Top-level x- keys hold anchors for merging (<<: *anchor); the parser skips them.
	if def := s.Definitions["File"]; def != nil {
		def.PatternProperties = map[string]*jsonschema.Schema{"^x-": jsonschema.TrueSchema}
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// docComments maps "Type" and "Type.Field" to their doc comments (full text, one line).
func docComments(dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	clean := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					if !ts.Name.IsExported() {
						continue
					}
					doc := ts.Doc
					if doc == nil {
						doc = gd.Doc
					}
					m[ts.Name.Name] = clean(doc.Text())
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							if n.IsExported() {
								m[ts.Name.Name+"."+n.Name] = clean(fl.Doc.Text())
							}
						}
					}
				}
			}
		}
	}
	return m, nil
}
