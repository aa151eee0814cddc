package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"go.yaml.in/yaml/v3"
)

// ConfigView is an environment as pushdeploy understood it: the file with the overrides
// given (flags, module arguments) applied. Secrets appear only as references (NAME, env:NAME,
// file:PATH) and, for the credential slots, whether one was given: never a value.
type ConfigView struct {
	File string `json:"file" yaml:"file"`
	App  string `json:"app" yaml:"app"`
	Env  string `json:"env" yaml:"env"`
	Kind string `json:"kind" yaml:"kind"`
	// Image is the file's image section, as its keys are spelled in the file.
	Image map[string]any `json:"image,omitempty" yaml:"image,omitempty"`
	// Environment is the environment's section, as its keys are spelled in the file.
	Environment map[string]any `json:"environment" yaml:"environment"`
	// Secrets are the secret references a deploy of the environment uses, by key path.
	Secrets []SecretView `json:"secrets" yaml:"secrets"`
	// Credentials says which credential slots were given (--ssh-key, --known-hosts,
	// --kubeconfig, --registry-password), and which further named secrets.
	Credentials map[string]bool `json:"credentials" yaml:"credentials"`
	Named       []string        `json:"namedSecrets,omitempty" yaml:"namedSecrets,omitempty"`
}

// SecretView is one secret reference of the file: where, and the reference, never the value.
type SecretView struct {
	Path string `json:"path" yaml:"path"`
	Ref  string `json:"ref" yaml:"ref"`
}

// Config returns the named environment as pushdeploy understood it, touching no target.
func (x *Environments) Config(name string) (*ConfigView, error) {
	if x.File == nil {
		return nil, errors.New("no environments file")
	}
	env, err := x.File.Env(name)
	if err != nil {
		return nil, err
	}
	v := &ConfigView{File: x.File.Name(), App: x.File.App, Env: name, Kind: env.Kind(),
		Credentials: map[string]bool{
			"sshKey":           len(x.Secrets.SSHKey) > 0,
			"knownHosts":       len(x.Secrets.KnownHosts) > 0,
			"kubeconfig":       len(x.Secrets.Kubeconfig) > 0,
			"registryPassword": len(x.Secrets.RegistryPassword) > 0,
		}}
	if v.Environment, err = asKeys(env); err != nil {
		return nil, fmt.Errorf("environment %q: %w", name, err)
	}
	if x.File.Image != nil {
		if v.Image, err = asKeys(x.File.Image); err != nil {
			return nil, fmt.Errorf("environment %q: the image: %w", name, err)
		}
	}
	uses, err := x.File.Secrets(name)
	if err != nil {
		return nil, err
	}
	v.Secrets = []SecretView{}
	for _, u := range uses {
		v.Secrets = append(v.Secrets, SecretView{Path: u.Path, Ref: string(u.Ref)})
	}
	for n := range x.Secrets.Named {
		v.Named = append(v.Named, n)
	}
	sort.Strings(v.Named)
	return v, nil
}

// asKeys turns a section of the file into a map keyed as the file spells its keys.
func asKeys(section any) (map[string]any, error) {
	b, err := yaml.Marshal(section)
	if err != nil {
		return nil, fmt.Errorf("showing the settings: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("showing the settings: %w", err)
	}
	return m, nil
}

// RenderConfig prints the view as YAML (format text) or JSON, scrubbed of every secret
// value known (should a plain setting hold one).
func RenderConfig(w io.Writer, format string, v *ConfigView, s Secrets) error {
	out := newMasker(w, s.values())
	if format == FormatJSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = out.Write(append(b, '\n'))
		return err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := out.Write(b.Bytes())
	return err
}
