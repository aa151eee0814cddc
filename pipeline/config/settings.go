package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Settings are one environment's settings given as arguments instead of an environments
// file: the pushdeploy CLI's flags (--health-url) and the Dagger module's deploy arguments
// (healthUrl, which dagger call spells --health-url). FromSettings makes a File of them;
// (*File).Override lays them over an environment of a file.
//
// This struct is the one list of those settings: the CLI binds its flags from the tags, and
// a test holds the module's parameters to them. Tags:
//
//   - flag: the flag's name; the module's parameter is the same in lowerCamelCase.
//   - help: the flag's help, and the module parameter's comment.
//   - key: the file key the setting sets. {env} stands for environments.NAME; {ssh},
//     {docker}, {kubernetes} or {ssh|docker} for the environment's target, and the setting
//     applies to those kinds only.
//   - list:"comma": a list flag that also splits its values at commas; other list flags
//     take one value each time they are given.
//   - own:"true": the commands define the flag themselves (--env), with their own help.
//
// The zero value of a field means "not given".
type Settings struct {
	App  string `flag:"app" key:"app" help:"The application's name (lower-case letters, digits and dashes): it names the releases, containers, locks and records."`
	Env  string `flag:"env" key:"{env}" own:"true" help:"The environment's name (lower-case letters, digits and dashes)."`
	Kind string `flag:"kind" help:"The target kind: ssh (files to servers), docker (a container on Docker hosts) or kubernetes (Deployments)."`

	Hosts []string `flag:"hosts" key:"{ssh|docker}.hosts" list:"comma" help:"The hosts, each host[:port] or user@host[:port] (ssh and docker)."`
	User  string   `flag:"user" key:"{ssh|docker}.user" help:"The SSH login, unless a host names its own (ssh and docker)."`
	Port  int      `flag:"port" key:"{ssh|docker}.port" help:"The SSH port, unless a host names its own (ssh and docker). Default: 22."`
	Jump  string   `flag:"jump" key:"{ssh|docker}.jump" help:"A bastion host the SSH connections go through: host[:port] or user@host[:port] (ssh and docker)."`

	Path           string   `flag:"path" key:"{ssh}.path" help:"The application's directory on the hosts, e.g. /var/www/myapp (ssh; required)."`
	Restart        string   `flag:"restart" key:"{ssh}.restart" help:"The command that makes the server pick up a new release, e.g. \"sudo systemctl restart myapp\" (ssh)."`
	Shared         []string `flag:"shared" key:"{ssh}.shared" list:"comma" help:"Paths, relative to a release, kept in PATH/shared and linked into every release (ssh)."`
	RestartTimeout string   `flag:"restart-timeout" key:"{ssh}.restart_timeout" help:"How long the restart command may run before it is killed and the host fails, e.g. 30s (ssh). Default: 2m."`

	Container      string   `flag:"container" key:"{docker}.container" help:"The container's name (docker). Default: APP-ENV."`
	Publish        []string `flag:"publish" key:"{docker}.ports" list:"comma" help:"Container ports to publish, as docker run -p does, e.g. 8080:80 (docker)."`
	Network        string   `flag:"network" key:"{docker}.network" help:"The network the container joins, e.g. host (docker). Default: Docker's bridge."`
	EnvVars        []string `flag:"env-var" key:"{docker}.env" help:"A plain environment variable of the container, KEY=VALUE (docker; repeatable). Secrets go in --secret-env."`
	SecretEnv      []string `flag:"secret-env" key:"{docker}.secret_env" help:"An environment variable of the container from a secret, KEY=SECRET where SECRET is NAME, env:NAME or file:PATH (docker; repeatable)."`
	Volumes        []string `flag:"volume" key:"{docker}.volumes" help:"A volume or host path to mount, as docker run -v does, e.g. data:/var/lib/app (docker; repeatable)."`
	RestartPolicy  string   `flag:"restart-policy" key:"{docker}.restart" help:"The container's restart policy: no, unless-stopped or on-failure (docker). Default: unless-stopped."`
	Memory         string   `flag:"memory" key:"{docker}.memory" help:"The container's memory limit, e.g. 512m (docker). Default: no limit."`
	CPUs           float64  `flag:"cpus" key:"{docker}.cpus" help:"The container's CPU limit, e.g. 1.5 (docker). Default: no limit."`
	StopTimeout    string   `flag:"stop-timeout" key:"{docker}.stop_timeout" help:"How long the old container gets to stop before it is killed, e.g. 30s (docker). Default: 10s."`
	StateDir       string   `flag:"state-dir" key:"{docker}.state_dir" help:"The directory on the hosts that keeps the deploy lock and history, absolute or relative to the SSH user's home (docker). Default: .pushdeploy."`
	DockerSocket   string   `flag:"docker-socket" key:"{docker}.socket" help:"The Docker Engine's unix socket on the hosts (docker). Default: /var/run/docker.sock."`
	DockerRegistry string   `flag:"docker-registry" key:"{docker}.registry" help:"none: the image goes straight to each host over SSH, only the layers it lacks, instead of the hosts pulling it from a registry (docker). Default: pull from the image's registry."`

	KubeContext    string   `flag:"kube-context" key:"{kubernetes}.context" help:"The kubeconfig context (kubernetes). Default: the current context."`
	Namespace      string   `flag:"namespace" key:"{kubernetes}.namespace" help:"The namespace of the Deployments (kubernetes). Default: the context's, else default."`
	Deployments    []string `flag:"deployment" key:"{kubernetes}.deployments" help:"A Deployment that runs the image: NAME, or NAME=CONTAINER,CONTAINER to set only those containers (kubernetes; repeatable; required)."`
	RolloutTimeout string   `flag:"rollout-timeout" key:"{kubernetes}.rollout_timeout" help:"How long each rollout may take, e.g. 10m (kubernetes). Default: 5m."`

	ImageRepository string `flag:"image-repository" key:"image.repository" help:"The repository images are published to, e.g. acme/myapp (docker and kubernetes)."`
	ImageRegistry   string `flag:"image-registry" key:"image.registry" help:"The registry of --image-repository, e.g. ghcr.io. Default: Docker Hub."`
	ImageUsername   string `flag:"image-username" key:"image.username" help:"The registry login. Default: no login."`
	ImagePassword   string `flag:"image-password" key:"image.password" help:"The secret holding the registry password: NAME, env:NAME or file:PATH. Default: the registry password given to the deploy."`
	ImageLatest     bool   `flag:"image-latest" key:"image.tags.latest" help:"Also tag published images latest."`

	HealthURL      string `flag:"health-url" key:"{env}.health.http.url" help:"A URL each host must answer, a template: http://{{.Address}}:8080/health."`
	HealthCommand  string `flag:"health-command" key:"{env}.health.command" help:"A command run on each host that exits 0 when the host is healthy (ssh and docker)."`
	HealthStatus   int    `flag:"health-status" key:"{env}.health.http.status" help:"The status --health-url must answer with. Default: 200."`
	HealthBody     string `flag:"health-body" key:"{env}.health.http.body" help:"A regular expression the body of --health-url's answer must match."`
	HealthInterval string `flag:"health-interval" key:"{env}.health.interval" help:"The wait between health attempts, e.g. 2s. Default: 1s."`
	HealthTimeout  string `flag:"health-timeout" key:"{env}.health.timeout" help:"How long one health attempt may take. Default: 5s."`
	HealthRetries  int    `flag:"health-retries" key:"{env}.health.retries" help:"How many health attempts fail before a host counts as unhealthy. Default: 30."`
	HealthStable   string `flag:"health-stable" key:"{env}.health.stable" help:"How long a host must keep passing its check (a container keep running) after it first passes, e.g. 10s. Default: 5s."`

	Batch     string `flag:"batch" key:"{env}.batches" help:"Hosts deployed at a time: a count (2) or a percentage (25%). Default: every host at once."`
	Keep      int    `flag:"keep" key:"{env}.keep" help:"Releases each host keeps for rollback, the live one included. Default: 5."`
	LockWait  string `flag:"lock-wait" key:"{env}.lock.wait" help:"How long to wait for a deploy lock someone else holds, e.g. 5m. Default: 0s, fail at once."`
	LockTTL   string `flag:"lock-ttl" key:"{env}.lock.ttl" help:"How long the deploy lock lives unless renewed. Default: 10m."`
	Protected bool   `flag:"protected" key:"{env}.protected" help:"Deploy only with an approval (--approved-by), which the record keeps."`
	From      string `flag:"from" key:"{env}.from" help:"The environment whose live, healthy digest this one promotes instead of building (with an environments file only)."`

	PreDeploy    []string `flag:"pre-deploy" key:"{env}.hooks.pre_deploy" help:"A command run before anything changes; a failure stops the deploy (repeatable)."`
	PostDeploy   []string `flag:"post-deploy" key:"{env}.hooks.post_deploy" help:"A command run once every host is healthy; a failure rolls the deploy back (repeatable)."`
	PostRollback []string `flag:"post-rollback" key:"{env}.hooks.post_rollback" help:"A command run after a rollback (repeatable)."`
	HooksWhere   string   `flag:"hooks-where" key:"{env}.hooks.where" help:"Where the hook commands run: container or hosts (ssh and docker). Default: container."`

	SlackWebhook string `flag:"slack-webhook" key:"{env}.notifications.slack.webhook" help:"The secret holding a Slack incoming-webhook URL: NAME, env:NAME or file:PATH."`
	WebhookURL   string `flag:"webhook-url" key:"{env}.notifications.webhook.url" help:"A URL the deployment record is posted to as JSON when a deploy ends."`
	MarkerURL    string `flag:"marker-url" key:"{env}.markers[0].url" help:"An observability endpoint a deployment marker is posted to after every deploy."`
	MarkerToken  string `flag:"marker-token" key:"{env}.markers[0].token" help:"The secret holding --marker-url's bearer token: NAME, env:NAME or file:PATH."`
}

// SettingField describes one field of Settings, from its tags.
type SettingField struct {
	// Field is the Go field's name, e.g. "HealthURL".
	Field string
	// Flag is the flag's name without the leading dashes, e.g. "health-url".
	Flag string
	// Help is the flag's help and the module parameter's comment.
	Help string
	// Key is the file key, with {env} and {KIND} placeholders; "" for --kind.
	Key string
	// Comma says a list flag also splits its values at commas.
	Comma bool
	// Own says the commands define the flag themselves.
	Own bool
}

// Kinds are the target kinds the setting applies to; nil when it applies to every kind.
func (sf SettingField) Kinds() []string {
	if strings.HasPrefix(sf.Key, "{") && !strings.HasPrefix(sf.Key, "{env}") {
		k, _, _ := strings.Cut(sf.Key[1:], "}")
		return strings.Split(k, "|")
	}
	return nil
}

// path is the file key the setting sets in environment env of the given kind.
func (sf SettingField) path(env, kind string) string {
	k := strings.Replace(sf.Key, "{env}", "environments."+env, 1)
	if i := strings.Index(k, "}"); strings.HasPrefix(k, "{") && i > 0 {
		k = "environments." + env + "." + kind + k[i+1:]
	}
	return k
}

var settingFields = func() []SettingField {
	t := reflect.TypeFor[Settings]()
	out := make([]SettingField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		out[i] = SettingField{
			Field: f.Name, Flag: f.Tag.Get("flag"), Help: f.Tag.Get("help"), Key: f.Tag.Get("key"),
			Comma: f.Tag.Get("list") == "comma", Own: f.Tag.Get("own") == "true",
		}
	}
	return out
}()

// SettingFields lists the fields of Settings in their order, for binding flags.
func SettingFields() []SettingField { return slices.Clone(settingFields) }

// Given lists the flags of the settings that are given (not zero), in field order, but for
// those the commands define themselves (--env, which every command takes anyway).
func (s Settings) Given() []string {
	var out []string
	rv := reflect.ValueOf(s)
	for i, sf := range settingFields {
		if !sf.Own && !rv.Field(i).IsZero() {
			out = append(out, "--"+sf.Flag)
		}
	}
	return out
}

// settingsFile names the arguments in messages, where a file's name would be.
const settingsFile = "the arguments"

// FromSettings builds a File with one environment, s.Env, from settings given as
// arguments, and validates it as Parse does a file. A problem is returned as Errors, each
// naming its argument: `--health-interval: invalid duration "3x": ...`. Promotion (--from)
// needs the source environment's settings too, so it needs a file.
func FromSettings(s Settings) (*File, error) {
	f := &File{App: s.App, Environments: map[string]*Environment{}, name: settingsFile}
	var errs Errors
	if s.App == "" {
		errs = append(errs, argError("app", "is required"))
	}
	if s.Env == "" {
		errs = append(errs, argError("env", "is required: it names the environment"))
	}
	switch s.Kind {
	case "ssh", "docker", "kubernetes":
	case "":
		errs = append(errs, argError("kind", "is required: ssh, docker or kubernetes"))
	default:
		errs = append(errs, argError("kind", fmt.Sprintf("%q is not one of \"ssh\", \"docker\", \"kubernetes\"", s.Kind)))
	}
	if s.From != "" {
		errs = append(errs, argError("from", "promotion needs the source environment's settings, which only an environments file gives: without one, deploy the source's digest with --image"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	e := &Environment{}
	f.Environments[s.Env] = e
	if err := check(f, e, s.Env, s.Kind, s); err != nil {
		return nil, err
	}
	return f, nil
}

// check applies s to f's environment e and validates f, with every problem named by its
// argument. A setting that did not convert gets no follow-on errors from Validate.
func check(f *File, e *Environment, env, kind string, s Settings) error {
	errs, ok := apply(f, e, env, kind, s)
	if !ok {
		return errs
	}
	if err := f.Validate(); err != nil {
		converted := errs
		for _, ve := range translate(err.(Errors), s, env, kind) {
			if !slices.ContainsFunc(converted, func(ae *Error) bool { return ae.Path == ve.Path || strings.HasPrefix(ve.Path, ae.Path+" ") }) {
				errs = append(errs, ve)
			}
		}
	}
	if len(errs) > 0 {
		return errs.sorted()
	}
	return nil
}

// Override lays the given settings (those not zero) over environment env of the file, as
// Kamal's command-line options do over its config: a list given replaces the file's list,
// --env-var and --secret-env replace single variables, --marker-url replaces the markers,
// --health-url and --health-command replace the file's check. The file's own kind stays:
// --kind may only repeat it, and settings of another kind are refused. A boolean can only
// be turned on. The result is validated as a whole; on error the file is left as it was.
func (f *File) Override(env string, s Settings) error {
	e, err := f.Env(env)
	if err != nil {
		return err
	}
	kind := e.Kind()
	var errs Errors
	if s.Env != "" && s.Env != env {
		errs = append(errs, argError("env", fmt.Sprintf("%q is not the environment overridden, %q", s.Env, env)))
	}
	if s.Kind != "" && s.Kind != kind {
		errs = append(errs, argError("kind", fmt.Sprintf("%q: %q is %s environment in %s", s.Kind, env, article(kind), f.Name())))
	}
	if len(errs) > 0 {
		return errs
	}
	cp := *f
	cp.lines = nil // validated as built in code: the tags and the secret references too
	cp.Environments = maps.Clone(f.Environments)
	ce := deepCopy(e)
	cp.Environments[env] = ce
	cp.Image = deepCopy(f.Image)
	if s.App != "" {
		cp.App = s.App
	}
	if err := check(&cp, ce, env, kind, s); err != nil {
		return err
	}
	cp.lines = f.lines
	*f = cp
	return nil
}

func argError(flag, msg string) *Error { return &Error{Path: "--" + flag, Msg: msg} }

// apply sets what s gives on f and its environment e (called name, of the given kind).
// The values are checked as they are converted, what the file's rules check is left to
// Validate; ok is false when the settings do not fit the kind, which Validate need not see.
func apply(f *File, e *Environment, name, kind string, s Settings) (errs Errors, ok bool) {
	fail := func(flag, format string, args ...any) {
		errs = append(errs, argError(flag, fmt.Sprintf(format, args...)))
	}
	rv := reflect.ValueOf(s)
	for i, sf := range settingFields {
		if ks := sf.Kinds(); ks != nil && !rv.Field(i).IsZero() && !slices.Contains(ks, kind) {
			fail(sf.Flag, "is for %s environments: %q is %s environment", strings.Join(ks, " and "), name, article(kind))
		}
	}
	if len(errs) > 0 {
		return errs, false
	}
	duration := func(flag, v string, into *Duration) {
		if v == "" {
			return
		}
		if err := into.UnmarshalText([]byte(v)); err != nil {
			fail(flag, "%v", err)
		}
	}
	secret := func(flag, v string) SecretRef {
		r := SecretRef(v)
		if err := r.Validate(); err != nil {
			fail(flag, "%v", err)
		}
		return r
	}
	host := func(flag, v string) HostSpec {
		var h HostSpec
		user, rest, ok := strings.Cut(v, "@")
		if !ok {
			user, rest = "", v
		} else if user == "" {
			fail(flag, "%q has no user before @", v)
			return h
		}
		if err := h.UnmarshalText([]byte(rest)); err != nil {
			fail(flag, "%v", err)
		}
		h.User = user
		return h
	}

	// The target.
	var acc *SSHAccess
	var hosts *[]HostSpec
	switch kind {
	case "ssh":
		if e.SSH == nil {
			e.SSH = &SSHTarget{}
		}
		acc, hosts = &e.SSH.SSHAccess, &e.SSH.Hosts
		setString(&e.SSH.Path, s.Path)
		setString(&e.SSH.Restart, s.Restart)
		duration("restart-timeout", s.RestartTimeout, &e.SSH.RestartTimeout)
		setList(&e.SSH.Shared, s.Shared)
	case "docker":
		if e.Docker == nil {
			e.Docker = &DockerTarget{}
		}
		d := e.Docker
		acc, hosts = &d.SSHAccess, &d.Hosts
		setString(&d.Container, s.Container)
		setList(&d.Ports, s.Publish)
		setString(&d.Network, s.Network)
		if len(s.EnvVars) > 0 {
			d.Env = maps.Clone(d.Env)
			if d.Env == nil {
				d.Env = map[string]string{}
			}
		}
		for i, kv := range s.EnvVars {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				// Not repeated: a value pasted here may be a secret.
				fail("env-var", "value %d is not KEY=VALUE", i+1)
				continue
			}
			d.Env[k] = val
		}
		if len(s.SecretEnv) > 0 {
			d.SecretEnv = maps.Clone(d.SecretEnv)
			if d.SecretEnv == nil {
				d.SecretEnv = map[string]SecretRef{}
			}
		}
		for i, kv := range s.SecretEnv {
			k, ref, ok := strings.Cut(kv, "=")
			if !ok || k == "" || ref == "" {
				fail("secret-env", "value %d is not KEY=SECRET (SECRET: NAME, env:NAME or file:PATH)", i+1)
				continue
			}
			d.SecretEnv[k] = secret("secret-env "+k, ref)
		}
		setList(&d.Volumes, s.Volumes)
		setString(&d.Restart, s.RestartPolicy)
		setString(&d.Memory, s.Memory)
		if s.CPUs != 0 {
			d.CPUs = s.CPUs
		}
		duration("stop-timeout", s.StopTimeout, &d.StopTimeout)
		setString(&d.StateDir, s.StateDir)
		setString(&d.Socket, s.DockerSocket)
		setString(&d.Registry, s.DockerRegistry)
	case "kubernetes":
		if e.Kubernetes == nil {
			e.Kubernetes = &KubernetesTarget{}
		}
		k := e.Kubernetes
		setString(&k.Context, s.KubeContext)
		setString(&k.Namespace, s.Namespace)
		if len(s.Deployments) > 0 {
			k.Deployments = nil
		}
		for _, d := range s.Deployments {
			n, cs, ok := strings.Cut(d, "=")
			if n == "" || (ok && cs == "") {
				fail("deployment", "%q: want NAME or NAME=CONTAINER,CONTAINER", d)
				continue
			}
			dep := Deployment{Name: n}
			if ok {
				dep.Containers = strings.Split(cs, ",")
			}
			k.Deployments = append(k.Deployments, dep)
		}
		duration("rollout-timeout", s.RolloutTimeout, &k.RolloutTimeout)
	}
	if hosts != nil {
		if len(s.Hosts) > 0 {
			*hosts = nil
		}
		for _, h := range s.Hosts {
			*hosts = append(*hosts, host("hosts", h))
		}
		setString(&acc.User, s.User)
		if s.Port != 0 {
			acc.Port = s.Port
		}
		if s.Jump != "" {
			j := host("jump", s.Jump)
			acc.Jump = &j
		}
	}

	// The image.
	if s.ImageRepository != "" || s.ImageRegistry != "" || s.ImageUsername != "" || s.ImagePassword != "" || s.ImageLatest {
		if f.Image == nil {
			f.Image = &Image{}
		}
		im := f.Image
		setString(&im.Repository, s.ImageRepository)
		setString(&im.Registry, s.ImageRegistry)
		setString(&im.Username, s.ImageUsername)
		if s.ImagePassword != "" {
			im.Password = secret("image-password", s.ImagePassword)
		}
		if s.ImageLatest {
			im.Tags.Latest = true
		}
	}

	// The health check.
	switch {
	case s.HealthURL != "" && s.HealthCommand != "":
		fail("health-url", "and --health-command: give one check, not both")
	case s.HealthURL != "":
		if e.Health == nil {
			e.Health = &Health{}
		}
		if e.Health.HTTP == nil {
			e.Health.HTTP = &HTTPCheck{}
		}
		e.Health.HTTP.URL, e.Health.Command = s.HealthURL, ""
	case s.HealthCommand != "":
		if e.Health == nil {
			e.Health = &Health{}
		}
		e.Health.HTTP, e.Health.Command = nil, s.HealthCommand
	}
	for _, c := range []struct {
		flag  string
		given bool
		http  bool
	}{
		{"health-status", s.HealthStatus != 0, true}, {"health-body", s.HealthBody != "", true},
		{"health-interval", s.HealthInterval != "", false}, {"health-timeout", s.HealthTimeout != "", false},
		{"health-retries", s.HealthRetries != 0, false},
	} {
		switch {
		case !c.given:
		case c.http && (e.Health == nil || e.Health.HTTP == nil):
			fail(c.flag, "needs --health-url")
		case e.Health == nil:
			fail(c.flag, "needs --health-url or --health-command")
		}
	}
	if h := e.Health; h != nil {
		if h.HTTP != nil {
			if s.HealthStatus != 0 {
				h.HTTP.Status = s.HealthStatus
			}
			setString(&h.HTTP.Body, s.HealthBody)
		}
		duration("health-interval", s.HealthInterval, &h.Interval)
		duration("health-timeout", s.HealthTimeout, &h.Timeout)
		if s.HealthRetries != 0 {
			h.Retries = s.HealthRetries
		}
	}
	if s.HealthStable != "" {
		// The window needs no check of its own: a container must keep running for it.
		if e.Health == nil {
			e.Health = &Health{}
		}
		duration("health-stable", s.HealthStable, &e.Health.Stable)
	}

	// How the deploy goes.
	if s.Batch != "" {
		if err := e.Batches.UnmarshalText([]byte(s.Batch)); err != nil {
			fail("batch", "%v", err)
		}
	}
	if s.Keep != 0 {
		e.Keep = s.Keep
	}
	duration("lock-wait", s.LockWait, &e.Lock.Wait)
	duration("lock-ttl", s.LockTTL, &e.Lock.TTL)
	if s.Protected {
		e.Protected = true
	}
	setString(&e.From, s.From)

	// Hooks.
	for _, h := range []struct {
		flag string
		cmds []string
		into *[]string
	}{{"pre-deploy", s.PreDeploy, &e.Hooks.PreDeploy}, {"post-deploy", s.PostDeploy, &e.Hooks.PostDeploy}, {"post-rollback", s.PostRollback, &e.Hooks.PostRollback}} {
		for i, c := range h.cmds {
			if strings.TrimSpace(c) == "" {
				fail(h.flag, "command %d is empty", i+1)
			}
		}
		setList(h.into, h.cmds)
	}
	setString(&e.Hooks.Where, s.HooksWhere)

	// Notifications and markers.
	if s.SlackWebhook != "" {
		sl := &SlackNotification{}
		if e.Notifications.Slack != nil {
			*sl = *e.Notifications.Slack
		}
		sl.Webhook = secret("slack-webhook", s.SlackWebhook)
		e.Notifications.Slack = sl
	}
	if s.WebhookURL != "" {
		wh := &WebhookNotification{}
		if e.Notifications.Webhook != nil {
			*wh = *e.Notifications.Webhook
		}
		wh.URL = s.WebhookURL
		e.Notifications.Webhook = wh
	}
	switch {
	case s.MarkerURL != "":
		m := Marker{URL: s.MarkerURL}
		if s.MarkerToken != "" {
			m.Token = secret("marker-token", s.MarkerToken)
		}
		e.Markers = []Marker{m}
	case s.MarkerToken != "":
		fail("marker-token", "needs --marker-url")
	}
	return errs, true
}

func setString(into *string, v string) {
	if v != "" {
		*into = v
	}
}

func setList(into *[]string, v []string) {
	if len(v) > 0 {
		*into = slices.Clone(v)
	}
}

// translate names the arguments in Validate's errors about settings that s gives: the
// file's key paths become flags and the file's words the flags' words. An error about a
// key that no given setting sets keeps its path (in Override, a key of the file).
func translate(errs Errors, s Settings, env, kind string) Errors {
	out := make(Errors, 0, len(errs))
	for _, e := range errs {
		p, msg := e.Path, e.Msg
		if k, ok := strings.CutPrefix(msg, "missing required key "); ok {
			if name, err := strconv.Unquote(k); err == nil && argFor(join(p, name), "", s, env, kind) != "" {
				p, msg = join(p, name), "is required"
			}
		}
		if ne, ok := rewrite(p, msg, env); ok {
			if ne != nil {
				out = append(out, ne)
			}
			continue
		}
		arg := argFor(p, msg, s, env, kind)
		if arg == "" {
			if e.File == settingsFile {
				e.File = ""
			}
			out = append(out, e)
			continue
		}
		out = append(out, &Error{Path: arg, Msg: flagWords.Replace(msg)})
	}
	return out
}

// argFor names the argument that set the key at path p: the flag, with the list element
// at fault (unless msg quotes it already) or the variable's name; "" when no setting sets
// the key.
func argFor(p, msg string, s Settings, env, kind string) string {
	rv := reflect.ValueOf(s)
	for i, sf := range settingFields {
		if sf.Key == "" || (sf.Kinds() != nil && !slices.Contains(sf.Kinds(), kind)) {
			continue
		}
		k := sf.path(env, kind)
		if p == k {
			return "--" + sf.Flag
		}
		rest, ok := strings.CutPrefix(p, k)
		if !ok || rest == "" {
			continue
		}
		fv := rv.Field(i)
		switch rest[0] {
		case '.':
			// A map entry (env-var, secret-env): the variable's name, never its value.
			if sf.Flag == "env-var" || sf.Flag == "secret-env" {
				name, _, _ := strings.Cut(rest[1:], ".")
				return "--" + sf.Flag + " " + name
			}
		case '[':
			arg := "--" + sf.Flag
			var n int
			if _, err := fmt.Sscanf(rest, "[%d]", &n); err == nil && fv.Kind() == reflect.Slice && n < fv.Len() {
				if v := fv.Index(n).String(); !strings.Contains(msg, strconv.Quote(v)) {
					arg += " " + strconv.Quote(v)
				}
			}
			return arg
		}
	}
	return ""
}

// flagWords are the file's words in Validate's messages, as flags.
var flagWords = strings.NewReplacer(
	"move it to secret_env and name the secret", "give it as --secret-env KEY=SECRET",
	"also set in secret_env", "also given as --secret-env",
	"use notifications.slack.webhook with the secret's name", "use --slack-webhook with the secret's name",
	"set user on the host or on the target", "give --user, or user@host in --hosts",
)

// rewrite words the errors about keys that several settings make, or none; ok says it
// did, and a nil error that apply has said it already.
func rewrite(p, msg, env string) (e *Error, ok bool) {
	ep := "environments." + env
	switch {
	case p == ep+".kubernetes" && msg == "needs at least one deployment":
		return argError("deployment", "is required: at least one Deployment runs the image"), true
	case p == "image" && strings.HasPrefix(msg, "username and password go together"):
		return argError("image-username", "and --image-password go together: give both or neither"), true
	case p == ep+".hooks" && strings.HasSuffix(msg, " is empty"):
		return nil, true // apply names the flag and the command
	case p == ep+".health.http.url" && strings.HasPrefix(msg, "the template uses"):
		return argError("health-url", strings.Replace(msg, "the template", "the URL template", 1)), true
	}
	return nil, false
}

// deepCopy copies a value of the file's types: pointers, structs of exported fields,
// slices and maps are copied, not shared.
func deepCopy[T any](v T) T {
	var out T
	copyValue(reflect.ValueOf(&out).Elem(), reflect.ValueOf(v))
	return out
}

func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if !src.IsNil() {
			dst.Set(reflect.New(src.Type().Elem()))
			copyValue(dst.Elem(), src.Elem())
		}
	case reflect.Struct:
		for i := range src.NumField() {
			if src.Type().Field(i).IsExported() {
				copyValue(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Slice:
		if !src.IsNil() {
			dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
			for i := range src.Len() {
				copyValue(dst.Index(i), src.Index(i))
			}
		}
	case reflect.Map:
		if !src.IsNil() {
			dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
			for _, k := range src.MapKeys() {
				ev := reflect.New(src.Type().Elem()).Elem()
				copyValue(ev, src.MapIndex(k))
				dst.SetMapIndex(k, ev)
			}
		}
	default:
		dst.Set(src)
	}
}
