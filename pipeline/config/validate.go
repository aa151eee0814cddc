package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	containerRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	portRE      = regexp.MustCompile(`^((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?([0-9]{1,5}(-[0-9]{1,5})?:)?[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp|sctp))?$`)
	// secretish matches variable names that say their value is a credential.
	secretish = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY)`)
)

// MarkerFuncs are the functions a marker body template may call, for parsing only. The
// notify package renders the template with the same names.
var MarkerFuncs = template.FuncMap{"json": func(any) (string, error) { return "", nil }}

type validation struct {
	f    *File
	errs Errors
}

func (v *validation) errorf(p, format string, args ...any) {
	e := &Error{File: v.f.Name(), Path: p, Msg: fmt.Sprintf(format, args...)}
	// The key itself, else the nearest enclosing key that the file has.
	for q := p; ; {
		if lp, ok := v.f.lines[q]; ok {
			e.Line, e.Column = lp.line, lp.col
			break
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	v.errs = append(v.errs, e)
}

// Validate checks what the types alone cannot: exactly one target per environment, kind-
// specific settings, promotion sources that exist, templates and URLs that parse, secret
// references that are references. Parse calls it; call it on a File built in code. It
// returns Errors, positioned when the File came from Parse.
func (f *File) Validate() error {
	v := &validation{f: f}
	// A File built in code has not been through the decoder: hold it to the same tags.
	var tagged []string // the paths of the values the tags rejected
	if len(f.lines) == 0 {
		v.tags(reflect.ValueOf(f).Elem(), "", &tagged)
	}
	n := len(v.errs)
	if f.App == "" {
		v.errorf("app", "missing required key %q", "app")
	} else if !nameRE.MatchString(f.App) {
		v.errorf("app", "%q is not a valid app name: lower-case letters, digits and dashes", f.App)
	}
	if f.Image != nil {
		v.image(f.Image)
	}
	if f.Build.Artifacts != "" {
		v.relative("build.artifacts", f.Build.Artifacts)
	}
	if len(f.Environments) == 0 {
		v.errorf("environments", "at least one environment is needed")
	}
	for _, name := range f.EnvNames() {
		v.env(name, f.Environments[name])
	}
	v.secretRefs()
	// As in Parse: a value the tags rejected gets no follow-on errors.
	errs := v.errs[:n:n]
	for _, e := range v.errs[n:] {
		if !slices.ContainsFunc(tagged, func(p string) bool { return related(p, e.Path) }) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return errs.sorted()
	}
	return nil
}

// tags checks a value built in code against the jsonschema tags that the decoder enforces
// on a parsed file: required keys, enums, patterns, bounds. A zero value counts as absent,
// as omitempty writes it.
func (v *validation) tags(rv reflect.Value, p string, tagged *[]string) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			v.tags(rv.Elem(), p, tagged)
		}
	case reflect.Struct:
		for _, f := range fieldsOf(rv.Type()) {
			fv := rv.FieldByIndex(f.index)
			fp := join(p, f.name)
			if fv.IsZero() {
				if f.required {
					v.errorf(p, "missing required key %q", f.name)
					*tagged = append(*tagged, fp)
				}
				continue
			}
			for _, pr := range tagProblems(fv, f) {
				ep := fp
				if pr.index >= 0 {
					ep = fmt.Sprintf("%s[%d]", fp, pr.index)
				}
				v.errorf(ep, "%s", pr.msg)
				*tagged = append(*tagged, ep)
			}
			v.tags(fv, fp, tagged)
		}
	case reflect.Map:
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			v.tags(rv.MapIndex(k), join(p, k.String()), tagged)
		}
	case reflect.Slice:
		for i := range rv.Len() {
			v.tags(rv.Index(i), fmt.Sprintf("%s[%d]", p, i), tagged)
		}
	}
}

func (v *validation) image(im *Image) {
	if im.Repository == "" {
		v.errorf("image", "missing required key %q", "repository")
	}
	if (im.Username == "") != (im.Password == "") {
		v.errorf("image", "username and password go together: give both or neither")
	}
}

func (v *validation) env(name string, e *Environment) {
	p := "environments." + name
	if !nameRE.MatchString(name) {
		v.errorf(p, "%q is not a valid environment name: lower-case letters, digits and dashes", name)
	}
	if e == nil {
		v.errorf(p, "needs a target: one of ssh, docker, kubernetes")
		return
	}
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"ssh", e.SSH != nil}, {"docker", e.Docker != nil}, {"kubernetes", e.Kubernetes != nil}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	switch len(kinds) {
	case 0:
		v.errorf(p, "needs a target: one of ssh, docker, kubernetes")
	case 1:
	default:
		v.errorf(p, "has %s: give exactly one target", strings.Join(kinds, " and "))
	}
	switch {
	case e.SSH != nil:
		v.ssh(p+".ssh", e.SSH)
	case e.Docker != nil:
		v.docker(p+".docker", e.Docker)
	case e.Kubernetes != nil:
		v.kubernetes(p+".kubernetes", e.Kubernetes)
	}
	if e.URL != "" {
		v.url(p+".url", e.URL, false)
	}
	if e.From != "" {
		v.from(name, e)
	}
	if e.Health != nil {
		v.health(p+".health", e.Health, e.Kind())
	}
	if e.Keep != 0 && e.Keep < 2 {
		v.errorf(p+".keep", "keeping %d releases: at least 2 are needed (the live one and the previous)", e.Keep)
	}
	if e.Lock.TTL.Duration != 0 && e.Lock.TTL.Seconds() < 1 {
		v.errorf(p+".lock.ttl", "%s is too short: at least 1s", e.Lock.TTL)
	}
	v.progressive(p, e)
	if e.Hooks.Where == "hosts" && e.Kind() == "kubernetes" {
		v.errorf(p+".hooks.where", `"hosts" needs ssh or docker hosts: kubernetes hooks run in a container`)
	}
	if len(e.Hooks.Updated) > 0 && e.Kind() == "kubernetes" {
		v.errorf(p+".hooks.updated", "runs in the staged release on each host (a release directory on servers, a one-off container of the new image on Docker hosts), which a kubernetes environment has not: run a migration before the switch with hooks.migrate (once, in a container of the new image)")
	}
	for i, c := range slices.Concat(e.Hooks.PreDeploy, e.Hooks.Updated, e.Hooks.PostDeploy, e.Hooks.PostRollback) {
		if strings.TrimSpace(c) == "" {
			v.errorf(p+".hooks", "command %d is empty", i+1)
		}
	}
	if n := e.Notifications.Webhook; n != nil {
		v.url(p+".notifications.webhook.url", n.URL, true)
	}
	for i, m := range e.Markers {
		mp := fmt.Sprintf("%s.markers[%d]", p, i)
		v.url(mp+".url", m.URL, true)
		if m.Body != "" {
			if _, err := template.New("body").Funcs(MarkerFuncs).Option("missingkey=error").Parse(m.Body); err != nil {
				v.errorf(mp+".body", "invalid template: %v", err)
			}
		}
	}
}

func (v *validation) from(name string, e *Environment) {
	p := "environments." + name + ".from"
	src, ok := v.f.Environments[e.From]
	switch {
	case e.From == name:
		v.errorf(p, "an environment cannot promote from itself")
		return
	case !ok || src == nil:
		v.errorf(p, "environment %q is not in the file (known: %s)", e.From, quoteList(v.f.EnvNames()))
		return
	case (e.Kind() == "ssh") != (src.Kind() == "ssh") && e.Kind() != "" && src.Kind() != "":
		// An ssh environment deploys files, the others an image: their digests never match.
		v.errorf(p, "%s environment cannot promote from %q, %s environment: promote files from ssh to ssh, images between docker and kubernetes", article(e.Kind()), e.From, article(src.Kind()))
		return
	}
	if e.NoRegistry() != src.NoRegistry() && e.Kind() != "ssh" && src.Kind() != "ssh" {
		// Images sent over SSH are named by their image IDs, pulled ones by their registry
		// digests: the two never match.
		none, reg := name, e.From
		if src.NoRegistry() {
			none, reg = e.From, name
		}
		v.errorf(p, "%q has docker.registry: none and %q pulls from a registry: an image sent over SSH is named by its image ID, a pulled one by its registry digest, so one cannot promote the other (give both docker.registry: none, or neither)", none, reg)
		return
	}
	// A cycle (a from b, b from a) could never deploy anything.
	seen := []string{name}
	for cur := e.From; cur != ""; cur = v.f.Environments[cur].From {
		if slices.Contains(seen, cur) {
			v.errorf(p, "promotion cycle: %s", strings.Join(append(seen, cur), " <- "))
			return
		}
		seen = append(seen, cur)
		if v.f.Environments[cur] == nil {
			return
		}
	}
}

func (v *validation) hosts(p string, hosts []HostSpec, acc SSHAccess) {
	// Every host and user field, whichever form gave it (string or object), the target's
	// and the jump host's too: they reach ssh and the hosts' shells.
	if acc.User != "" && !validUser(acc.User) {
		v.errorf(p+".user", "invalid SSH user %q: %s", acc.User, userRule)
	}
	if j := acc.Jump; j != nil {
		if j.Host != "" && !validHostName(j.Host) {
			v.errorf(p+".jump", "invalid host %q: %s", j.Host, hostRule)
		}
		if j.User != "" && !validUser(j.User) {
			v.errorf(p+".jump.user", "invalid SSH user %q: %s", j.User, userRule)
		}
	}
	for i, h := range hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, i)
		if h.Host == "" {
			v.errorf(hp, "missing required key %q", "host")
		} else if !validHostName(h.Host) {
			v.errorf(hp, "invalid host %q: %s", h.Host, hostRule)
		}
		if h.User != "" && !validUser(h.User) {
			v.errorf(hp+".user", "invalid SSH user %q: %s", h.User, userRule)
		}
		if h.User == "" && acc.User == "" {
			v.errorf(hp, "no SSH user: set user on the host or on the target")
		}
		if slices.ContainsFunc(hosts[:i], func(o HostSpec) bool { return o.Host == h.Host && o.Port == h.Port }) {
			v.errorf(hp, "host %q is listed twice", h.String())
		}
	}
	if acc.Jump != nil && acc.Jump.Host == "" {
		v.errorf(p+".jump", "missing required key %q", "host")
	}
}

func (v *validation) ssh(p string, s *SSHTarget) {
	v.hosts(p, s.Hosts, s.SSHAccess)
	switch {
	case s.Path == "":
	case !path.IsAbs(s.Path):
		v.errorf(p+".path", "%q is not an absolute path", s.Path)
	case path.Clean(s.Path) == "/":
		v.errorf(p+".path", "the application's directory cannot be /")
	}
	for i, sh := range s.Shared {
		v.relative(fmt.Sprintf("%s.shared[%d]", p, i), sh)
	}
}

func (v *validation) relative(p, s string) {
	c := path.Clean(s)
	if path.IsAbs(s) || c == ".." || strings.HasPrefix(c, "../") || c == "." {
		v.errorf(p, "%q must be a relative path inside the directory", s)
	}
}

func (v *validation) docker(p string, d *DockerTarget) {
	v.hosts(p, d.Hosts, d.SSHAccess)
	if d.Container != "" && !containerRE.MatchString(d.Container) {
		v.errorf(p+".container", "%q is not a valid container name", d.Container)
	}
	for i, port := range d.Ports {
		if !portRE.MatchString(port) {
			v.errorf(fmt.Sprintf("%s.ports[%d]", p, i), "%q is not a port mapping like \"8080:80\" or \"127.0.0.1:8080:80/tcp\"", port)
		}
	}
	for _, k := range sortedKeys(d.Env) {
		if !envName.MatchString(k) {
			v.errorf(p+".env."+k, "%q is not a valid variable name", k)
		}
		if d.Env[k] != "" && secretish.MatchString(k) {
			v.errorf(p+".env."+k, "the name says it is a secret, so its value does not belong in the file: move it to secret_env and name the secret")
		}
		if _, ok := d.SecretEnv[k]; ok {
			v.errorf(p+".env."+k, "also set in secret_env: give it once")
		}
	}
	for _, k := range sortedKeys(d.SecretEnv) {
		if !envName.MatchString(k) {
			v.errorf(p+".secret_env."+k, "%q is not a valid variable name", k)
		}
	}
	for i, vol := range d.Volumes {
		parts := strings.Split(vol, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
			v.errorf(fmt.Sprintf("%s.volumes[%d]", p, i), "%q is not a volume like \"data:/var/lib/app\" or \"/srv/x:/x:ro\"", vol)
		}
	}
}

func (v *validation) kubernetes(p string, k *KubernetesTarget) {
	if k.Namespace != "" && !dnsLabelRE.MatchString(k.Namespace) {
		v.errorf(p+".namespace", "%q is not a valid namespace name", k.Namespace)
	}
	if len(k.Deployments) == 0 {
		v.errorf(p, "needs at least one deployment")
	}
	for i, d := range k.Deployments {
		dp := fmt.Sprintf("%s.deployments[%d]", p, i)
		if !dnsSubRE.MatchString(d.Name) {
			v.errorf(dp, "%q is not a valid deployment name", d.Name)
		}
		if slices.ContainsFunc(k.Deployments[:i], func(o Deployment) bool { return o.Name == d.Name }) {
			v.errorf(dp, "deployment %q is listed twice", d.Name)
		}
		for j, c := range d.Containers {
			if !dnsLabelRE.MatchString(c) {
				v.errorf(fmt.Sprintf("%s.containers[%d]", dp, j), "%q is not a valid container name", c)
			}
		}
	}
}

func (v *validation) health(p string, h *Health, kind string) {
	switch {
	case h.HTTP == nil && h.Command == "" && h.Stable.Duration == 0:
		v.errorf(p, "give http or command (or only stable, the window a container must keep running)")
	case h.HTTP != nil && h.Command != "":
		v.errorf(p, "give http or command, not both")
	case h.Command != "" && kind == "kubernetes":
		v.errorf(p+".command", "a command check runs on hosts: kubernetes environments use http")
	}
	if h.HTTP == nil {
		return
	}
	if h.HTTP.URL == "" {
		v.errorf(p+".http", "missing required key %q", "url")
		return
	}
	t, err := template.New("url").Option("missingkey=error").Parse(h.HTTP.URL)
	if err != nil {
		v.errorf(p+".http.url", "invalid template: %v", err)
		return
	}
	if kind == "kubernetes" && (strings.Contains(h.HTTP.URL, ".Address") || strings.Contains(h.HTTP.URL, ".Host")) {
		v.errorf(p+".http.url", "kubernetes Deployments have no address of their own: give the URL of the service (the rollout's own status already checks every pod)")
		return
	}
	var b strings.Builder
	if err := t.Execute(&b, healthFields); err != nil {
		v.errorf(p+".http.url", "the template uses something other than {{.Address}}, {{.Host}}, {{.Release}}, {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}} and {{.Env}}: %v", err)
		return
	}
	if u, err := url.Parse(b.String()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(p+".http.url", "does not give an http:// or https:// URL")
	}
	if h.HTTP.Body != "" {
		// A template first, over the same fields, whose values match literally.
		var pat strings.Builder
		bt, err := template.New("body").Option("missingkey=error").Parse(h.HTTP.Body)
		if err == nil {
			err = bt.Execute(&pat, healthFields)
		}
		if err != nil {
			v.errorf(p+".http.body", "invalid template: %v", err)
		} else if _, err := regexp.Compile(pat.String()); err != nil {
			v.errorf(p+".http.body", "invalid regular expression: %v", err)
		}
	}
}

// healthFields are stand-ins for the fields health url and body templates see.
var healthFields = struct{ Address, Host, Release, Version, Digest, Image, App, Env string }{
	"127.0.0.1", "web-1", "20260101T000000Z", "v1\\.2\\.3", "sha256:0", "registry/app@sha256:0", "app", "staging",
}

// credentialParam matches query parameters that carry credentials.
var credentialParam = regexp.MustCompile(`(?i)(token|secret|key|password|passwd|signature|sig|auth)`)

// url checks an endpoint URL without repeating it: it may hold a credential.
func (v *validation) url(p, s string, endpoint bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(p, "not an http:// or https:// URL")
		return
	}
	if !endpoint {
		return
	}
	if u.User != nil {
		v.errorf(p, "the URL holds a user or password: name a secret for the credential instead")
	}
	for k := range u.Query() {
		if credentialParam.MatchString(k) {
			v.errorf(p, "the URL's query parameter %q looks like a credential: name a secret for it instead", k)
		}
	}
	if strings.Contains(u.Host, "hooks.slack.com") {
		v.errorf(p, "a Slack webhook URL is a secret: use notifications.slack.webhook with the secret's name")
	}
}

// secretRefs checks the form of every SecretRef in the file. Parse checks them while
// decoding, with positions; this covers a File built in code.
func (v *validation) secretRefs() {
	if len(v.f.lines) > 0 {
		return
	}
	var uses []SecretUse
	collectSecrets(reflect.ValueOf(v.f).Elem(), "", &uses)
	for _, u := range uses {
		if err := u.Ref.Validate(); err != nil {
			v.errorf(u.Path, "%v", err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func article(kind string) string {
	if kind == "ssh" {
		return "an ssh"
	}
	return "a " + kind
}

const (
	hostRule = "want a host name (letters, digits, '-', '_' and '.') or an IP address"
	userRule = "want a login name (letters, digits, '_', '.' and '-', not starting with '-')"
)

// validHostName says whether h is an IP address or a host name: what ssh and the hosts'
// shells can be given without quoting surprises.
func validHostName(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 || strings.HasPrefix(h, "-") || strings.HasPrefix(h, ".") {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validUser says whether u is a portable login name (POSIX's portable user names).
func validUser(u string) bool {
	if u == "" || len(u) > 64 || strings.HasPrefix(u, "-") {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
