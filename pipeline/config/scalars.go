package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
)

// Duration is a length of time written as a Go duration string: "30s", "5m", "1h30m".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string; a bare number is an error (no unit).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: write it with a unit, like \"30s\" or \"5m\"", b)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// JSONSchema describes a duration string.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`,
		Description: `A duration with a unit: "500ms", "30s", "5m", "1h30m".`,
		Examples:    []any{"30s", "5m"},
	}
}

// HostSpec is one host: "host", "host:port", "[::1]:port", or an object with host, port and
// user. Port and User are zero when the entry does not give them.
type HostSpec struct {
	// Host is the host name or IP address.
	Host string `yaml:"host" jsonschema:"required"`
	// Port is the SSH port. Default: the target's port, else 22.
	Port int `yaml:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	// User is the SSH login. Default: the target's user.
	User string `yaml:"user,omitempty"`
}

// UnmarshalText parses the "host[:port]" form.
func (h *HostSpec) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		return errors.New("empty host")
	}
	if strings.ContainsAny(s, " \t/@") {
		return fmt.Errorf("invalid host %q: write \"host\" or \"host:port\" (a user goes in the object form or the target's user)", s)
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		hp, p, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("invalid host %q: %v", s, err)
		}
		host, port = hp, p
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	if host == "" {
		return fmt.Errorf("invalid host %q: no host name", s)
	}
	*h = HostSpec{Host: host}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("invalid port %q in host %q: must be a number from 1 to 65535", port, s)
		}
		h.Port = n
	}
	return nil
}

// String is "host", "host:port" or "user@host:port".
func (h HostSpec) String() string {
	s := h.Host
	if h.Port != 0 {
		s = net.JoinHostPort(h.Host, strconv.Itoa(h.Port))
	}
	if h.User != "" {
		s = h.User + "@" + s
	}
	return s
}

// JSONSchema allows the string form beside the object form.
func (HostSpec) JSONSchema() *jsonschema.Schema {
	props := orderedmap.New[string, *jsonschema.Schema]()
	props.Set("host", &jsonschema.Schema{Type: "string", Description: "The host name or IP address."})
	props.Set("port", &jsonschema.Schema{Type: "integer", Minimum: "1", Maximum: "65535", Description: "The SSH port. Default: the target's port, else 22."})
	props.Set("user", &jsonschema.Schema{Type: "string", Description: "The SSH login. Default: the target's user."})
	return &jsonschema.Schema{
		Description: `A host: "host", "host:port", "[::1]:port", or an object with host, port and user.`,
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^(\[[0-9a-fA-F:.]+\]|[^\s/@:\[\]]+)(:[0-9]{1,5})?$`},
			{Type: "object", Properties: props, Required: []string{"host"}, AdditionalProperties: jsonschema.FalseSchema},
		},
	}
}

// UnmarshalText parses the name-only form of a Deployment.
func (d *Deployment) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty deployment name")
	}
	*d = Deployment{Name: string(b)}
	return nil
}

// JSONSchemaExtend allows the name-only form beside the object form.
func (Deployment) JSONSchemaExtend(s *jsonschema.Schema) {
	obj := *s
	obj.Description = ""
	*s = jsonschema.Schema{
		Description: s.Description,
		OneOf:       []*jsonschema.Schema{{Type: "string", MinLength: ptr(uint64(1))}, &obj},
	}
}

func ptr[T any](v T) *T { return &v }

// Batches is how many hosts are deployed at a time: a count or a percentage of the hosts.
// The zero value means every host in one batch.
type Batches struct {
	// Count is a number of hosts, 0 when Percent is used.
	Count int
	// Percent is a percentage of the hosts (1-100), 0 when Count is used.
	Percent int
}

// UnmarshalText parses 3 or "25%".
func (b *Batches) UnmarshalText(t []byte) error {
	s := strings.TrimSpace(string(t))
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("invalid batch percentage %q: must be from 1%% to 100%%", s)
		}
		*b = Batches{Percent: n}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("invalid batches %q: write a number of hosts (at least 1) or a percentage like \"25%%\"", s)
	}
	*b = Batches{Count: n}
	return nil
}

// MarshalText writes 3 or "25%".
func (b Batches) MarshalText() ([]byte, error) {
	switch {
	case b.Percent > 0:
		return []byte(strconv.Itoa(b.Percent) + "%"), nil
	case b.Count > 0:
		return []byte(strconv.Itoa(b.Count)), nil
	}
	return []byte("0"), nil // every host
}

// IsZero says every host goes in one batch.
func (b Batches) IsZero() bool { return b.Count == 0 && b.Percent == 0 }

// JSONSchema allows a count or a percentage string.
func (Batches) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: `Hosts deployed at a time: a count (2) or a percentage of the hosts ("25%").`,
		OneOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: "1"},
			{Type: "string", Pattern: `^([1-9][0-9]?|100)%$`},
		},
	}
}

// SecretRef names a secret; it never holds one. Three forms:
//
//   - NAME: a secret the caller passes under that name (upper-case letters, digits and
//     underscores, e.g. SLACK_WEBHOOK);
//   - env:NAME: the value of the environment variable NAME where pushdeploy runs;
//   - file:PATH: the contents of the file PATH where pushdeploy runs.
//
// Anything else — in particular something that looks like a secret value (a PEM block, a
// URL, a token) — is rejected when the file is parsed, without repeating the value.
type SecretRef string

var (
	secretName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// tokenPrefix matches well-known credential formats that could pass for a NAME.
	tokenPrefix = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{12,}$|^(GH[POUSR]|GLPAT|XOX[ABPRS]|SK_LIVE|SK_TEST|RK_LIVE|NPM)_`)
)

// Kind says which form the reference has: "name", "env" or "file"; "" for the zero value.
func (r SecretRef) Kind() string {
	switch {
	case r == "":
		return ""
	case strings.HasPrefix(string(r), "env:"):
		return "env"
	case strings.HasPrefix(string(r), "file:"):
		return "file"
	}
	return "name"
}

// Name is the secret's name, the environment variable's name or the file's path.
func (r SecretRef) Name() string {
	_, after, ok := strings.Cut(string(r), ":")
	if !ok {
		return string(r)
	}
	return after
}

// Validate checks the form. Its errors never contain the value, which may be a secret
// pasted in by mistake.
func (r SecretRef) Validate() error {
	s := string(r)
	switch {
	case s == "":
		return nil
	case strings.Contains(s, "-----BEGIN"):
		return errors.New("holds a PEM block (a key or certificate): put it in a secret and name it here (NAME, env:NAME or file:PATH)")
	case strings.Contains(s, "://"):
		return errors.New("holds a URL: a URL with credentials (a Slack webhook) is a secret itself; put it in a secret and name it here (NAME, env:NAME or file:PATH)")
	case strings.HasPrefix(s, "env:"):
		if !envName.MatchString(r.Name()) {
			return errors.New("env: must be followed by an environment variable name (letters, digits, underscores)")
		}
		return nil
	case strings.HasPrefix(s, "file:"):
		if strings.TrimSpace(r.Name()) == "" || strings.ContainsAny(r.Name(), "\n\r") {
			return errors.New("file: must be followed by a path")
		}
		return nil
	case len(s) > 64 || !secretName.MatchString(s):
		return errors.New("looks like a secret value, not a secret's name: give NAME (upper-case letters, digits, underscores), env:NAME or file:PATH, and pass the value as a secret")
	case tokenPrefix.MatchString(strings.ToUpper(s)):
		return errors.New("looks like a credential (a known token format), not a secret's name: pass the value as a secret and name it here")
	}
	return nil
}

// JSONSchema describes the reference forms.
func (SecretRef) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Description: "A secret's name, never its value: NAME (a secret passed to the deploy), env:NAME (an environment variable) or file:PATH (a file).",
		Pattern:     `^([A-Z][A-Z0-9_]{0,63}|env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$`,
		Examples:    []any{"SLACK_WEBHOOK", "env:SSH_KEY", "file:~/.kube/config"},
	}
}

// JSONSchemaExtend requires exactly one target kind.
func (Environment) JSONSchemaExtend(s *jsonschema.Schema) {
	for _, k := range []string{"ssh", "docker", "kubernetes"} {
		s.OneOf = append(s.OneOf, &jsonschema.Schema{Required: []string{k}})
	}
}
