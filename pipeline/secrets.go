package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Secrets are the secret values a deploy was given. The environments file only names them
// (config.SecretRef); the caller passes the values: the Dagger module as *dagger.Secret
// arguments, the CLI from files and environment variables.
type Secrets struct {
	// SSHKey is the SSH private key for ssh and docker targets (--ssh-key).
	SSHKey []byte
	// KnownHosts are the known_hosts lines host keys are verified against (--known-hosts).
	KnownHosts []byte
	// Kubeconfig is the kubeconfig for kubernetes targets (--kubeconfig).
	Kubeconfig []byte
	// RegistryPassword logs in to the image's registry (--registry-password).
	RegistryPassword []byte
	// Named holds the secrets the file names by NAME.
	Named map[string][]byte
	// Local reads env:NAME and file:PATH references where pushdeploy runs (the CLI). In
	// the Dagger module that would be the function's own container: there env:NAME is the
	// secret passed as NAME, and file:PATH is read with ReadFile (the source directory).
	Local bool
	// ReadFile reads file:PATH references when not Local. Nil: they are refused.
	ReadFile func(path string) ([]byte, error)
}

// Preload resolves every secret the file names, in every environment, ahead of the
// deploy: so that all of them are masked in what the deploy prints from its first line,
// and so that a secret named NAME and not passed is read from the variable $NAME where the
// CLI runs (CI keeps secrets in variables) — only the names the file uses, never the
// whole environment. A reference that cannot be resolved is left for the stage that needs
// it to report.
func (s *Secrets) Preload(f *config.File) {
	if f == nil {
		return
	}
	if s.Named == nil {
		s.Named = map[string][]byte{}
	}
	for _, env := range f.EnvNames() {
		uses, err := f.Secrets(env)
		if err != nil {
			continue
		}
		for _, u := range uses {
			ref := u.Ref
			switch ref.Kind() {
			case "name":
				if _, ok := s.Named[ref.Name()]; !ok && s.Local {
					if v, ok := os.LookupEnv(ref.Name()); ok {
						s.Named[ref.Name()] = []byte(v)
					}
				}
			case "env", "file":
				if _, ok := s.Named[string(ref)]; ok {
					continue
				}
				if v, err := s.Resolve(ref, nil, u.Path); err == nil {
					s.Named[string(ref)] = v
				}
			}
		}
	}
}

// Resolve returns the value of ref, or of slot when ref is empty. what names the secret
// in errors, which never hold a value.
//
// When the file names a secret and its slot (--ssh-key, --kubeconfig, ...) is given too,
// both must be the same secret: one never silently wins over the other.
func (s *Secrets) Resolve(ref config.SecretRef, slot []byte, what string) ([]byte, error) {
	if ref.Kind() == "" || slot == nil {
		return s.resolve(ref, slot, what)
	}
	v, err := s.resolve(ref, nil, what)
	if err != nil {
		return nil, fmt.Errorf("%w; the secret given in its slot has another name: name the slot's secret in the file, or drop the file's reference to use the slot", err)
	}
	if !bytes.Equal(v, slot) {
		return nil, fmt.Errorf("%s: the file names secret %q, and the slot for it was given a different secret: give one of them, or the same", what, ref.Name())
	}
	return v, nil
}

// SecretNameOf is the name a secret reference or URI gives: NAME of NAME, env:NAME,
// env://NAME or env://NAME?cacheKey=...; PATH of file:PATH or file://PATH.
func SecretNameOf(ref string) string {
	if i := strings.Index(ref, "://"); i >= 0 {
		ref = ref[i+3:]
		if q := strings.IndexByte(ref, '?'); q >= 0 {
			ref = ref[:q]
		}
	} else if i := strings.Index(ref, ":"); i >= 0 {
		ref = ref[i+1:]
	}
	return ref
}

func (s *Secrets) resolve(ref config.SecretRef, slot []byte, what string) ([]byte, error) {
	switch ref.Kind() {
	case "":
		return slot, nil
	case "name":
		v, ok := s.Named[ref.Name()]
		if !ok {
			return nil, fmt.Errorf("%s: secret %q was not passed to the deploy (known: %s)", what, ref.Name(), s.names())
		}
		return v, nil
	case "env":
		if v, ok := s.Named[string(ref)]; ok { // preloaded
			return v, nil
		}
		if !s.Local {
			// In the module the caller's environment is not ours: env:NAME is the secret
			// the caller passed from its own $NAME (dagger call --secrets env:NAME).
			if v, ok := s.Named[ref.Name()]; ok {
				return v, nil
			}
			return nil, fmt.Errorf("%s: %q is read from the caller's environment: pass it to the module (--secrets env:%s)", what, string(ref), ref.Name())
		}
		v, ok := os.LookupEnv(ref.Name())
		if !ok {
			return nil, fmt.Errorf("%s: environment variable %q is not set", what, ref.Name())
		}
		return []byte(v), nil
	case "file":
		if v, ok := s.Named[string(ref)]; ok { // preloaded
			return v, nil
		}
		read := os.ReadFile
		if !s.Local {
			if s.ReadFile == nil {
				return nil, fmt.Errorf("%s: %q reads a file where pushdeploy runs, which the Dagger module does not share: pass the secret by name", what, string(ref))
			}
			read = s.ReadFile
		}
		v, err := read(ref.Name())
		if err != nil {
			return nil, fmt.Errorf("%s: reading secret file: %w", what, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("%s: unknown secret reference form", what)
}

func (s *Secrets) names() string {
	if len(s.Named) == 0 {
		return "none"
	}
	var n []string
	for k := range s.Named {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// values lists every secret value, for scrubbing output.
func (s *Secrets) values() [][]byte {
	out := [][]byte{s.SSHKey, s.Kubeconfig, s.RegistryPassword}
	for _, v := range s.Named {
		out = append(out, v)
	}
	return out
}

// SSHCredentials are the SSH key and known_hosts of an ssh or docker environment: the
// file's secrets, else the slots (--ssh-key, --known-hosts). A key is required.
func (s *Secrets) SSHCredentials(acc config.SSHAccess) (key, knownHosts []byte, err error) {
	if key, err = s.Resolve(acc.Key, s.SSHKey, "ssh key"); err != nil {
		return nil, nil, err
	}
	if len(key) == 0 {
		return nil, nil, fmt.Errorf("no SSH private key: pass one (--ssh-key) or name its secret in the file (key:)")
	}
	if knownHosts, err = s.Resolve(acc.KnownHosts, s.KnownHosts, "known_hosts"); err != nil {
		return nil, nil, err
	}
	return key, knownHosts, nil
}
