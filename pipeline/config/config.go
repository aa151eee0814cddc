// Package config reads pushdeploy.yaml, the environments file an application keeps in its
// repository (in the spirit of Kamal's config/deploy.yml): the app's name, how it is built
// and published, and per environment the target (ssh, docker or kubernetes) with its
// settings, health check, batches, approval, promotion source, hooks, notifications and
// markers.
//
// Parsing is strict. Unknown keys, values of the wrong type, missing required keys and
// settings that do not fit together are errors naming the file, the line and the key's path,
// all of them at once:
//
//	pushdeploy.yaml:12: environments.production.health.intervall: unknown key "intervall", did you mean "interval"?
//	pushdeploy.yaml:20: environments.production.from: environment "stagin" is not in the file (known: "production", "staging")
//
// Secrets never appear in the file: fields that need one hold a SecretRef (a name, env:NAME
// or file:PATH), and something that looks like a secret value is rejected without being
// repeated.
//
// The JSON Schema at schema/pushdeploy.schema.json is generated from these types for
// editors (go generate ./pipeline/config); a test fails when it is stale.
//
// This package is plain Go and a leaf: it imports no other pushdeploy package.
package config

//go:generate go run ../../internal/gen/configschema -src . -out ../../schema/pushdeploy.schema.json

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultFile is the environments file's name in a repository.
const DefaultFile = "pushdeploy.yaml"

// Load reads and parses the file at path; see Parse.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading environments file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses an environments file and validates it. name is the file's name in messages.
// A problem with the file is returned as Errors, one *Error per problem.
func Parse(name string, data []byte) (*File, error) {
	d := &decoder{file: name, lines: map[string]linePos{}, keys: map[string][]string{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Msg: "the file is empty"}}
		}
		return nil, syntaxError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		return nil, Errors{{File: name, Line: line, Msg: "the file holds more than one YAML document"}}
	}
	doc := root.Content[0]
	if isNull(resolve(doc)) {
		return nil, Errors{{File: name, Msg: "the file is empty"}}
	}
	f := &File{name: name}
	d.decode(doc, reflect.ValueOf(f).Elem(), "")
	f.order = d.keys["environments"]
	f.lines = d.lines
	errs := d.errs
	if err := f.Validate(); err != nil {
		for _, e := range err.(Errors) {
			// A value that did not decode is left empty: drop the follow-on errors about it
			// and about what holds it.
			if !slices.ContainsFunc(d.failed, func(p string) bool { return related(p, e.Path) }) {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return f, nil
}

// related says whether one key path is the other or holds it.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == "" || a == b || strings.HasPrefix(b, a+".") || strings.HasPrefix(b, a+"[")
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxError(name string, err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Errors{{File: name, Line: line, Msg: "invalid YAML: " + m[2]}}
	}
	return Errors{{File: name, Msg: "invalid YAML: " + err.Error()}}
}

// Name is the file's name as given to Load or Parse.
func (f *File) Name() string {
	if f.name == "" {
		return DefaultFile
	}
	return f.name
}

// EnvNames lists the environments in the order the file gives them (sorted for a File
// built in code).
func (f *File) EnvNames() []string {
	if len(f.order) == len(f.Environments) {
		return slices.Clone(f.order)
	}
	names := make([]string, 0, len(f.Environments))
	for n := range f.Environments {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Env returns the environment called name, or an error that lists the known ones.
func (f *File) Env(name string) (*Environment, error) {
	if e := f.Environments[name]; e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("environment %q is not in %s: the environments are %s", name, f.Name(), quoteList(f.EnvNames()))
}

// Line says where the key at path is in the file ("environments.staging.ssh.hosts[0]"); 0
// when unknown.
func (f *File) Line(path string) int { return f.lines[path].line }

// Kind is the environment's target kind: "ssh", "docker" or "kubernetes"; "" when none is
// set (which Validate rejects).
// NoRegistry reports whether the environment's images go to its hosts over SSH
// (docker.registry: none) rather than through a registry.
func (e *Environment) NoRegistry() bool {
	return e != nil && e.Docker != nil && e.Docker.Registry == RegistryNone
}

// RegistryNone is docker.registry's value for images sent over SSH.
const RegistryNone = "none"

func (e *Environment) Kind() string {
	switch {
	case e.SSH != nil:
		return "ssh"
	case e.Docker != nil:
		return "docker"
	case e.Kubernetes != nil:
		return "kubernetes"
	}
	return ""
}

// Hosts are the environment's hosts for ssh and docker targets, with the target's user and
// port filled in where a host does not give its own; nil for kubernetes.
func (e *Environment) Hosts() []HostSpec {
	var hosts []HostSpec
	var acc SSHAccess
	switch {
	case e.SSH != nil:
		hosts, acc = e.SSH.Hosts, e.SSH.SSHAccess
	case e.Docker != nil:
		hosts, acc = e.Docker.Hosts, e.Docker.SSHAccess
	default:
		return nil
	}
	out := make([]HostSpec, len(hosts))
	for i, h := range hosts {
		if h.User == "" {
			h.User = acc.User
		}
		if h.Port == 0 {
			h.Port = acc.Port
		}
		if h.Port == 0 {
			h.Port = 22
		}
		out[i] = h
	}
	return out
}

// Sends says whether a notification with the given on-list is sent for a deploy that
// succeeded or not: an empty list sends both.
func Sends(on []string, succeeded bool) bool {
	if len(on) == 0 {
		return true
	}
	want := "failure"
	if succeeded {
		want = "success"
	}
	return slices.Contains(on, want)
}

// CommitTag says whether images get the commit SHA tag (default true).
func (t TagPolicy) CommitTag() bool { return t.Commit == nil || *t.Commit }

// VersionTag says whether images get the git tag (default true).
func (t TagPolicy) VersionTag() bool { return t.Version == nil || *t.Version }

// SecretUse is one secret reference in the file and where it is.
type SecretUse struct {
	// Path is the key's path, e.g. "environments.production.docker.key".
	Path string
	// Ref is the reference.
	Ref SecretRef
}

// Secrets lists the secret references a deploy of the environment uses — the image's and
// the environment's own — sorted by path, so that the caller can check that every one can
// be resolved before anything changes.
func (f *File) Secrets(env string) ([]SecretUse, error) {
	e, err := f.Env(env)
	if err != nil {
		return nil, err
	}
	var out []SecretUse
	collectSecrets(reflect.ValueOf(f.Image), "image", &out)
	collectSecrets(reflect.ValueOf(e), "environments."+env, &out)
	slices.SortFunc(out, func(a, b SecretUse) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func collectSecrets(rv reflect.Value, p string, out *[]SecretUse) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			collectSecrets(rv.Elem(), p, out)
		}
	case reflect.Struct:
		for _, f := range fieldsOf(rv.Type()) {
			collectSecrets(rv.FieldByIndex(f.index), join(p, f.name), out)
		}
	case reflect.Map:
		for _, k := range rv.MapKeys() {
			collectSecrets(rv.MapIndex(k), join(p, k.String()), out)
		}
	case reflect.Slice:
		for i := range rv.Len() {
			collectSecrets(rv.Index(i), fmt.Sprintf("%s[%d]", p, i), out)
		}
	case reflect.String:
		if r, ok := rv.Interface().(SecretRef); ok && r != "" {
			*out = append(*out, SecretUse{Path: p, Ref: r})
		}
	}
}
