package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func TestFromSettingsDocker(t *testing.T) {
	f, err := config.FromSettings(config.Settings{
		App: "web", Env: "staging", Kind: "docker",
		Hosts: []string{"10.0.0.1", "ops@10.0.0.2:2222", "[::1]:22"}, User: "deploy", Port: 2200, Jump: "bastion@jump.example.com:22",
		Container: "web-blue", Publish: []string{"8080:80"}, Network: "host",
		EnvVars: []string{"MODE=staging", "EMPTY="}, SecretEnv: []string{"DATABASE_URL=DATABASE_URL", "API_TOKEN=env:API_TOKEN"},
		Volumes: []string{"data:/var/lib/app"}, RestartPolicy: "on-failure", Memory: "512m", CPUs: 1.5, StopTimeout: "30s",
		ImageRepository: "acme/web", ImageRegistry: "127.0.0.1:5000", ImageUsername: "ci", ImagePassword: "REGISTRY_PASSWORD", ImageLatest: true,
		HealthURL: "http://{{.Address}}:8080/health", HealthStatus: 204, HealthBody: "ok", HealthInterval: "2s", HealthTimeout: "3s", HealthRetries: 7,
		Batch: "25%", Keep: 3, LockWait: "1m", LockTTL: "20m", Protected: true,
		PreDeploy: []string{"echo pre, with a comma"}, PostDeploy: []string{"./it.sh"}, PostRollback: []string{"echo rolled back"}, HooksWhere: "hosts",
		SlackWebhook: "SLACK_WEBHOOK", WebhookURL: "https://deploys.example.com/hook", MarkerURL: "https://markers.example.com/api", MarkerToken: "file:/run/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.App != "web" || f.Name() != "the arguments" || !reflect.DeepEqual(f.EnvNames(), []string{"staging"}) {
		t.Fatalf("file: app %q, name %q, environments %v", f.App, f.Name(), f.EnvNames())
	}
	e, err := f.Env("staging")
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Environment{
		Docker: &config.DockerTarget{
			Hosts:     []config.HostSpec{{Host: "10.0.0.1"}, {Host: "10.0.0.2", Port: 2222, User: "ops"}, {Host: "::1", Port: 22}},
			SSHAccess: config.SSHAccess{User: "deploy", Port: 2200, Jump: &config.HostSpec{Host: "jump.example.com", Port: 22, User: "bastion"}},
			Container: "web-blue", Ports: []string{"8080:80"}, Network: "host",
			Env:       map[string]string{"MODE": "staging", "EMPTY": ""},
			SecretEnv: map[string]config.SecretRef{"DATABASE_URL": "DATABASE_URL", "API_TOKEN": "env:API_TOKEN"},
			Volumes:   []string{"data:/var/lib/app"}, Restart: "on-failure", Memory: "512m", CPUs: 1.5, StopTimeout: dur(30 * time.Second),
		},
		Protected: true,
		Health: &config.Health{
			HTTP:     &config.HTTPCheck{URL: "http://{{.Address}}:8080/health", Status: 204, Body: "ok"},
			Interval: dur(2 * time.Second), Timeout: dur(3 * time.Second), Retries: 7,
		},
		Batches: config.Batches{Percent: 25},
		Keep:    3,
		Lock:    config.Lock{Wait: dur(time.Minute), TTL: dur(20 * time.Minute)},
		Hooks: config.Hooks{
			PreDeploy: []string{"echo pre, with a comma"}, PostDeploy: []string{"./it.sh"}, PostRollback: []string{"echo rolled back"}, Where: "hosts",
		},
		Notifications: config.Notifications{
			Slack:   &config.SlackNotification{Webhook: "SLACK_WEBHOOK"},
			Webhook: &config.WebhookNotification{URL: "https://deploys.example.com/hook"},
		},
		Markers: []config.Marker{{URL: "https://markers.example.com/api", Token: "file:/run/token"}},
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("environment:\n%+v\nwant:\n%+v", e, want)
	}
	wantImage := &config.Image{Registry: "127.0.0.1:5000", Repository: "acme/web", Username: "ci", Password: "REGISTRY_PASSWORD", Tags: config.TagPolicy{Latest: true}}
	if !reflect.DeepEqual(f.Image, wantImage) {
		t.Errorf("image: %+v, want %+v", f.Image, wantImage)
	}
	// The file's own accessors see the arguments as they see a file.
	if hs := e.Hosts(); hs[0].String() != "deploy@10.0.0.1:2200" || hs[1].String() != "ops@10.0.0.2:2222" {
		t.Errorf("Hosts() = %v", hs)
	}
	uses, err := f.Secrets("staging")
	if err != nil || len(uses) != 5 {
		t.Errorf("Secrets() = %v, %v; want 5 references", uses, err)
	}
}

func dur(d time.Duration) config.Duration { return config.Duration{Duration: d} }

func TestFromSettingsSSHAndKubernetes(t *testing.T) {
	f, err := config.FromSettings(config.Settings{
		App: "site", Env: "prod", Kind: "ssh", Hosts: []string{"a", "b"}, User: "deploy",
		Path: "/var/www/site", Restart: "sudo systemctl restart site", Shared: []string{"uploads", ".env"},
		HealthCommand: "curl -fsS localhost:8080/health", HealthRetries: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := f.Environments["prod"]
	want := &config.SSHTarget{
		Hosts: []config.HostSpec{{Host: "a"}, {Host: "b"}}, SSHAccess: config.SSHAccess{User: "deploy"},
		Path: "/var/www/site", Restart: "sudo systemctl restart site", Shared: []string{"uploads", ".env"},
	}
	if !reflect.DeepEqual(e.SSH, want) || e.Health.Command == "" || e.Health.HTTP != nil || f.Image != nil {
		t.Errorf("ssh environment: %+v, health %+v, image %+v", e.SSH, e.Health, f.Image)
	}

	f, err = config.FromSettings(config.Settings{
		App: "api", Env: "prod", Kind: "kubernetes", KubeContext: "kind-prod", Namespace: "apps",
		Deployments: []string{"api", "worker=main,sidecar"}, RolloutTimeout: "10m", ImageRepository: "acme/api",
		HealthURL: "https://api.example.com/health",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantK := &config.KubernetesTarget{
		Context: "kind-prod", Namespace: "apps", RolloutTimeout: dur(10 * time.Minute),
		Deployments: []config.Deployment{{Name: "api"}, {Name: "worker", Containers: []string{"main", "sidecar"}}},
	}
	if k := f.Environments["prod"].Kubernetes; !reflect.DeepEqual(k, wantK) {
		t.Errorf("kubernetes: %+v, want %+v", k, wantK)
	}
}

// Every setting lands on the key its tag names: set alone on a minimal environment of a
// kind it applies to, it makes that key (or the list, map or mapping under it) non-zero.
func TestSettingsSetTheirKeys(t *testing.T) {
	values := map[string]any{
		"Hosts": []string{"h2"}, "User": "u2", "Port": 2222, "Jump": "j", "Path": "/srv/x", "Restart": "r", "Shared": []string{"s"},
		"Container": "c", "Publish": []string{"80:80"}, "Network": "n", "EnvVars": []string{"A=1"}, "SecretEnv": []string{"B=B"},
		"Volumes": []string{"v:/v"}, "RestartPolicy": "no", "Memory": "1g", "CPUs": 2.0, "StopTimeout": "1s",
		"KubeContext": "ctx", "Namespace": "ns", "Deployments": []string{"d2"}, "RolloutTimeout": "1m",
		"ImageRepository": "r/x", "ImageRegistry": "reg", "ImageUsername": "u", "ImagePassword": "P", "ImageLatest": true,
		"HealthURL": "http://{{.Address}}/", "HealthCommand": "true", "HealthInterval": "1s", "HealthTimeout": "1s", "HealthRetries": 2,
		"Batch": "2", "Keep": 4, "LockWait": "1s", "LockTTL": "1m", "Protected": true, "From": "staging",
		"PreDeploy": []string{"x"}, "PostDeploy": []string{"x"}, "PostRollback": []string{"x"}, "HooksWhere": "container",
		"SlackWebhook": "S", "WebhookURL": "https://h.example.com/", "MarkerURL": "https://m.example.com/", "MarkerToken": "T",
		"HealthStatus": 201, "HealthBody": "x",
		"RestartTimeout": "1s", "StateDir": "/srv/state", "DockerSocket": "/run/docker.sock", "HealthStable": "1s",
		"DockerRegistry": "none",
	}
	for _, sf := range config.SettingFields() {
		if sf.Key == "" || sf.Own || sf.Key == "app" {
			continue
		}
		v, ok := values[sf.Field]
		if !ok {
			t.Errorf("no test value for %s", sf.Field)
			continue
		}
		kind := "docker"
		if ks := sf.Kinds(); ks != nil {
			kind = ks[0]
		}
		base := config.Settings{App: "a", Env: "e", Kind: kind}
		switch kind {
		case "ssh":
			base.Hosts, base.User, base.Path = []string{"h"}, "u", "/srv/a"
		case "docker":
			base.Hosts, base.User = []string{"h"}, "u"
		case "kubernetes":
			base.Deployments = []string{"d"}
		}
		s := base
		reflect.ValueOf(&s).Elem().FieldByName(sf.Field).Set(reflect.ValueOf(v))
		switch sf.Field {
		case "HealthStatus", "HealthBody":
			s.HealthURL = "http://{{.Address}}/"
		case "MarkerToken":
			s.MarkerURL = "https://m.example.com/"
		case "HealthInterval", "HealthTimeout", "HealthRetries":
			s.HealthCommand = "true"
		case "ImageRegistry", "ImageUsername", "ImagePassword", "ImageLatest":
			s.ImageRepository = "r/x"
			if sf.Field == "ImageUsername" || sf.Field == "ImagePassword" {
				s.ImageUsername, s.ImagePassword = "u", "P"
			}
		}
		// From needs a file: the setting is laid over one with a source environment.
		f := &config.File{App: "a", Environments: map[string]*config.Environment{
			"staging": {Docker: &config.DockerTarget{Hosts: []config.HostSpec{{Host: "h"}}, SSHAccess: config.SSHAccess{User: "u"}}},
		}}
		if sf.Field != "From" {
			if _, err := config.FromSettings(base); err != nil {
				t.Fatalf("%s: base: %v", sf.Field, err)
			}
			var err error
			if f, err = config.FromSettings(s); err != nil {
				t.Errorf("--%s: %v", sf.Flag, err)
				continue
			}
		} else {
			f.Environments["e"] = &config.Environment{Docker: &config.DockerTarget{Hosts: []config.HostSpec{{Host: "h"}}, SSHAccess: config.SSHAccess{User: "u"}}}
			if err := f.Override("e", config.Settings{From: "staging"}); err != nil {
				t.Fatalf("--from: %v", err)
			}
		}
		key := strings.Replace(sf.Key, "{env}", "e", 1)
		if i := strings.Index(key, "}"); strings.HasPrefix(key, "{") {
			key = "e." + kind + key[i+1:]
		}
		if got := lookup(t, f, key); got.IsZero() {
			t.Errorf("--%s did not set %s", sf.Flag, key)
		}
	}
}

// lookup finds the value at a key path ("e.docker.hosts", "image.tags.latest",
// "e.markers[0].url") by the yaml names of the fields; "e" is environments.e.
func lookup(t *testing.T, f *config.File, key string) reflect.Value {
	t.Helper()
	parts := strings.Split(strings.ReplaceAll(key, "[0]", ".[0]"), ".")
	var v reflect.Value
	if parts[0] == "e" {
		v, parts = reflect.ValueOf(f.Environments["e"]), parts[1:]
	} else {
		v = reflect.ValueOf(f).Elem()
	}
	for _, p := range parts {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}
			}
			v = v.Elem()
		}
		if p == "[0]" {
			if v.Len() == 0 {
				return reflect.Value{}
			}
			v = v.Index(0)
			continue
		}
		v = fieldByYAML(v, p)
		if !v.IsValid() {
			t.Fatalf("%s: no key %q", key, p)
		}
	}
	return v
}

func fieldByYAML(v reflect.Value, name string) reflect.Value {
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		n, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if n == name {
			return v.Field(i)
		}
		if sf.Anonymous && opts == "inline" {
			if r := fieldByYAML(v.Field(i), name); r.IsValid() {
				return r
			}
		}
	}
	return reflect.Value{}
}

func TestFromSettingsErrors(t *testing.T) {
	docker := func(mod func(*config.Settings)) config.Settings {
		s := config.Settings{App: "web", Env: "staging", Kind: "docker", Hosts: []string{"h"}, User: "u"}
		mod(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		s    config.Settings
		want []string
	}{
		{"nothing", config.Settings{}, []string{
			`--app: is required`,
			`--env: is required: it names the environment`,
			`--kind: is required: ssh, docker or kubernetes`,
		}},
		{"kind", config.Settings{App: "web", Env: "x", Kind: "nomad"}, []string{`--kind: "nomad" is not one of "ssh", "docker", "kubernetes"`}},
		{"from", docker(func(s *config.Settings) { s.From = "staging" }), []string{
			`--from: promotion needs the source environment's settings, which only an environments file gives: without one, deploy the source's digest with --image`,
		}},
		{"names", docker(func(s *config.Settings) { s.App, s.Env = "Web", "Stag ing" }), []string{
			`--app: "Web" does not match ^[a-z0-9][a-z0-9-]*$`,
			`--env: "Stag ing" is not a valid environment name: lower-case letters, digits and dashes`,
		}},
		{"durations", docker(func(s *config.Settings) {
			s.HealthURL, s.HealthInterval, s.LockTTL, s.StopTimeout = "http://{{.Address}}/", "3x", "5", "-1s"
		}), []string{
			`--health-interval: invalid duration "3x": write it with a unit, like "30s" or "5m"`,
			`--lock-ttl: invalid duration "5": write it with a unit, like "30s" or "5m"`,
			`--stop-timeout: invalid duration "-1s": must not be negative`,
		}},
		{"kind mismatch", docker(func(s *config.Settings) { s.Path, s.Deployments = "/srv", []string{"d"} }), []string{
			`--path: is for ssh environments: "staging" is a docker environment`,
			`--deployment: is for kubernetes environments: "staging" is a docker environment`,
		}},
		{"ssh hosts", config.Settings{App: "web", Env: "staging", Kind: "ssh", Hosts: []string{"a", "b", "a"}, Path: "/srv"}, []string{
			`--hosts: host "a" is listed twice`,
			`--hosts "a": no SSH user: give --user, or user@host in --hosts`,
			`--hosts "b": no SSH user: give --user, or user@host in --hosts`,
		}},
		{"ssh required", config.Settings{App: "web", Env: "staging", Kind: "ssh"}, []string{
			`--hosts: is required`,
			`--path: is required`,
		}},
		{"ssh values", config.Settings{App: "web", Env: "staging", Kind: "ssh", Hosts: []string{"a", "b:70000", "a", "@c"}, Path: "srv", Shared: []string{"../up"}, Port: 70000}, []string{
			`--hosts: invalid port "70000" in host "b:70000": must be a number from 1 to 65535`,
			`--hosts: "@c" has no user before @`,
			`--path: "srv" is not an absolute path`,
			`--port: 70000 is more than the maximum 65535`,
			`--shared: "../up" must be a relative path inside the directory`,
		}},
		{"kubernetes required", config.Settings{App: "web", Env: "prod", Kind: "kubernetes", Deployments: []string{"=x", "Web"}, HealthCommand: "true"}, []string{
			`--deployment: "=x": want NAME or NAME=CONTAINER,CONTAINER`,
			`--health-command: a command check runs on hosts: kubernetes environments use http`,
		}},
		{"kubernetes values", config.Settings{App: "web", Env: "prod", Kind: "kubernetes", Deployments: []string{"Web", "api=App"}, Namespace: "No", HealthCommand: "true", HooksWhere: "hosts"}, []string{
			`--deployment: "Web" is not a valid deployment name`,
			`--deployment "api=App": "App" is not a valid container name`,
			`--health-command: a command check runs on hosts: kubernetes environments use http`,
			`--hooks-where: "hosts" needs ssh or docker hosts: kubernetes hooks run in a container`,
			`--namespace: "No" is not a valid namespace name`,
		}},
		{"docker values", docker(func(s *config.Settings) {
			s.Container, s.Publish, s.Volumes, s.RestartPolicy, s.Memory, s.CPUs = "-x", []string{"80:80", "eighty"}, []string{"data"}, "sometimes", "lots", -1
			s.EnvVars = []string{"GH_TOKEN=ghp_abcdefghijklmnop1234", "BAD-NAME=1", "DB=x", "ghp_noequalsign"}
			s.SecretEnv = []string{"DB=DB", "KEY=-----BEGIN KEY", "NOREF"}
		}), []string{
			`--container: "-x" is not a valid container name`,
			`--cpus: -1 must be more than 0`,
			`--env-var: value 4 is not KEY=VALUE`,
			`--memory: "lots" does not match ^[0-9]+[bkmgBKMG]?$`,
			`--publish: "eighty" is not a port mapping like "8080:80" or "127.0.0.1:8080:80/tcp"`,
			`--restart-policy: "sometimes" is not one of "no", "unless-stopped", "on-failure"`,
			`--secret-env: value 3 is not KEY=SECRET (SECRET: NAME, env:NAME or file:PATH)`,
			`--secret-env KEY: holds a PEM block (a key or certificate): put it in a secret and name it here (NAME, env:NAME or file:PATH)`,
			`--volume: "data" is not a volume like "data:/var/lib/app" or "/srv/x:/x:ro"`,
		}},
		{"docker values after conversion", docker(func(s *config.Settings) {
			s.Container, s.Publish, s.Volumes, s.RestartPolicy, s.Memory, s.CPUs = "-x", []string{"80:80", "eighty"}, []string{"data"}, "sometimes", "lots", -1
			s.EnvVars = []string{"GH_TOKEN=ghp_abcdefghijklmnop1234", "BAD-NAME=1", "DB=x"}
			s.SecretEnv = []string{"DB=DB"}
		}), []string{
			`--container: "-x" is not a valid container name`,
			`--cpus: -1 must be more than 0`,
			`--env-var BAD-NAME: "BAD-NAME" is not a valid variable name`,
			`--env-var DB: also given as --secret-env: give it once`,
			`--env-var GH_TOKEN: the name says it is a secret, so its value does not belong in the file: give it as --secret-env KEY=SECRET`,
			`--memory: "lots" does not match ^[0-9]+[bkmgBKMG]?$`,
			`--publish: "eighty" is not a port mapping like "8080:80" or "127.0.0.1:8080:80/tcp"`,
			`--restart-policy: "sometimes" is not one of "no", "unless-stopped", "on-failure"`,
			`--volume: "data" is not a volume like "data:/var/lib/app" or "/srv/x:/x:ro"`,
		}},
		{"health", docker(func(s *config.Settings) { s.HealthStatus, s.HealthRetries = 200, 3 }), []string{
			`--health-retries: needs --health-url or --health-command`,
			`--health-status: needs --health-url`,
		}},
		{"health both", docker(func(s *config.Settings) { s.HealthURL, s.HealthCommand = "http://x/", "true" }), []string{
			`--health-url: and --health-command: give one check, not both`,
		}},
		{"health values", docker(func(s *config.Settings) {
			s.HealthURL, s.HealthStatus, s.HealthBody, s.HealthRetries = "http://{{.Addr}}/", 99, "(", -1
		}), []string{
			`--health-retries: -1 is less than the minimum 1`,
			`--health-status: 99 is less than the minimum 100`,
			`--health-url: the URL template uses something other than {{.Address}}, {{.Host}}, {{.Release}}, {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}} and {{.Env}}: template: url:1:9: executing "url" at <.Addr>: can't evaluate field Addr in type struct { Address string; Host string; Release string; Version string; Digest string; Image string; App string; Env string }`,
		}},
		{"health body", docker(func(s *config.Settings) { s.HealthURL, s.HealthBody = "http://{{.Address}}/", "(" }), []string{
			`--health-body: invalid regular expression: error parsing regexp: missing closing ): ` + "`(`",
		}},
		{"deploy", docker(func(s *config.Settings) { s.Batch, s.Keep, s.LockTTL = "0%", 1, "10ms" }), []string{
			`--batch: invalid batch percentage "0%": must be from 1% to 100%`,
			`--keep: 1 is less than the minimum 2`,
			`--lock-ttl: 10ms is too short: at least 1s`,
		}},
		{"hooks", docker(func(s *config.Settings) { s.PreDeploy, s.PostDeploy = []string{"ok"}, []string{"ok", " "} }), []string{
			`--post-deploy: command 2 is empty`,
		}},
		{"image", docker(func(s *config.Settings) { s.ImageUsername = "ci" }), []string{
			`--image-repository: is required`,
		}},
		{"image password", docker(func(s *config.Settings) { s.ImageRepository, s.ImagePassword = "acme/web", "hunter2hunter2" }), []string{
			`--image-password: looks like a secret value, not a secret's name: give NAME (upper-case letters, digits, underscores), env:NAME or file:PATH, and pass the value as a secret`,
			`--image-username: and --image-password go together: give both or neither`,
		}},
		{"image password alone", docker(func(s *config.Settings) { s.ImageRepository, s.ImagePassword = "acme/web", "REGISTRY_PASSWORD" }), []string{
			`--image-username: and --image-password go together: give both or neither`,
		}},
		{"notifications", docker(func(s *config.Settings) {
			s.SlackWebhook, s.WebhookURL, s.MarkerURL = "https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/services/T0/B0/YYYY", "ftp://m"
		}), []string{
			`--marker-url: not an http:// or https:// URL`,
			`--slack-webhook: holds a URL: a URL with credentials (a Slack webhook) is a secret itself; put it in a secret and name it here (NAME, env:NAME or file:PATH)`,
			`--webhook-url: a Slack webhook URL is a secret: use --slack-webhook with the secret's name`,
		}},
		{"notification urls", docker(func(s *config.Settings) {
			s.WebhookURL, s.MarkerURL = "https://hooks.slack.com/services/T0/B0/YYYY", "https://user:pw@m.example.com/?token=1"
		}), []string{
			`--marker-url: the URL holds a user or password: name a secret for the credential instead`,
			`--marker-url: the URL's query parameter "token" looks like a credential: name a secret for it instead`,
			`--webhook-url: a Slack webhook URL is a secret: use --slack-webhook with the secret's name`,
		}},
		{"marker token alone", docker(func(s *config.Settings) { s.MarkerToken = "T" }), []string{`--marker-token: needs --marker-url`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := config.FromSettings(tc.s)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("FromSettings = %v, %v; want Errors", f, err)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			for _, secret := range []string{"ghp_abcdefghijklmnop1234", "hunter2", "XXXX", "YYYY", ":pw@", "BEGIN KEY"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("an error repeats %q", secret)
				}
			}
		})
	}
}

func TestSettingsGivenAndFields(t *testing.T) {
	s := config.Settings{App: "a", Env: "e", Hosts: []string{"h"}, CPUs: 0.5, Protected: true}
	if got := s.Given(); !reflect.DeepEqual(got, []string{"--app", "--hosts", "--cpus", "--protected"}) {
		t.Errorf("Given() = %v", got)
	}
	seen := map[string]bool{}
	for _, sf := range config.SettingFields() {
		if sf.Flag == "" || sf.Help == "" || seen[sf.Flag] {
			t.Errorf("field %s: flag %q (repeated: %v), help %q", sf.Field, sf.Flag, seen[sf.Flag], sf.Help)
		}
		seen[sf.Flag] = true
	}
}

const overrideBase = `app: web
image:
  repository: acme/web
environments:
  staging:
    docker:
      hosts: [a, b]
      user: deploy
      env: {MODE: staging, KEEP: "1"}
    health:
      http:
        url: http://{{.Address}}:8080/health
        status: 204
      retries: 5
    markers:
      - url: https://one.example.com/
      - url: https://two.example.com/
  production:
    from: staging
    docker:
      hosts: [p]
      user: deploy
`

func TestOverride(t *testing.T) {
	f, err := parseString(overrideBase)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Override("staging", config.Settings{
		Kind: "docker", Hosts: []string{"c:2222"}, EnvVars: []string{"MODE=canary"}, HealthCommand: "true",
		MarkerURL: "https://three.example.com/", ImageRegistry: "127.0.0.1:5000", Protected: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := f.Environments["staging"]
	if got := e.Docker.Hosts; !reflect.DeepEqual(got, []config.HostSpec{{Host: "c", Port: 2222}}) {
		t.Errorf("hosts = %v", got)
	}
	if got := e.Docker.Env; !reflect.DeepEqual(got, map[string]string{"MODE": "canary", "KEEP": "1"}) {
		t.Errorf("env = %v", got)
	}
	if e.Health.HTTP != nil || e.Health.Command != "true" || e.Health.Retries != 5 {
		t.Errorf("health = %+v", e.Health)
	}
	if len(e.Markers) != 1 || e.Markers[0].URL != "https://three.example.com/" || !e.Protected {
		t.Errorf("markers = %+v, protected %v", e.Markers, e.Protected)
	}
	if f.Image.Registry != "127.0.0.1:5000" || f.Image.Repository != "acme/web" {
		t.Errorf("image = %+v", f.Image)
	}
	if f.Name() != "pushdeploy.yaml" || f.Line("environments.production") == 0 {
		t.Errorf("the file lost its name or lines: %q, %d", f.Name(), f.Line("environments.production"))
	}
}

func TestOverrideErrorsLeaveTheFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		s    config.Settings
		want string
	}{
		{"kind", "staging", config.Settings{Kind: "ssh", Path: "/srv"}, "--kind: \"ssh\": \"staging\" is a docker environment in pushdeploy.yaml"},
		{"other kind's setting", "staging", config.Settings{Path: "/srv"}, `--path: is for ssh environments: "staging" is a docker environment`},
		{"env", "staging", config.Settings{Env: "production"}, `--env: "production" is not the environment overridden, "staging"`},
		{"unknown env", "qa", config.Settings{}, `environment "qa" is not in pushdeploy.yaml: the environments are "staging", "production"`},
		{"values", "staging", config.Settings{HealthStatus: 600, Hosts: []string{"a", "a"}}, strings.Join([]string{
			`--health-status: 600 is more than the maximum 599`,
			`--hosts: host "a" is listed twice`,
		}, "\n")},
		{"from", "staging", config.Settings{From: "production"}, strings.Join([]string{
			`--from: promotion cycle: staging <- production <- staging`,
			`pushdeploy.yaml: environments.production.from: promotion cycle: production <- staging <- production`,
		}, "\n")},
		{"secret", "staging", config.Settings{EnvVars: []string{"API_TOKEN=xoxb-123"}}, `--env-var API_TOKEN: the name says it is a secret, so its value does not belong in the file: give it as --secret-env KEY=SECRET`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseString(overrideBase)
			if err != nil {
				t.Fatal(err)
			}
			err = f.Override(tc.env, tc.s)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tc.want)
			}
			if before, _ := parseString(overrideBase); !reflect.DeepEqual(f, before) {
				t.Errorf("a failed Override changed the file")
			}
		})
	}
}

// A File built in code is held to the schema's tags as a parsed one is: required keys,
// enums, patterns and bounds, a zero value counting as absent.
func TestValidateTagsOfFileBuiltInCode(t *testing.T) {
	f := &config.File{App: "web", Image: &config.Image{Username: "ci", Password: "P"}, Environments: map[string]*config.Environment{
		"staging": {Docker: &config.DockerTarget{Hosts: []config.HostSpec{{Host: "h", Port: 70000}}, SSHAccess: config.SSHAccess{User: "u"}, Restart: "sometimes"}},
		"prod":    {SSH: &config.SSHTarget{Hosts: []config.HostSpec{{Host: "h"}}, SSHAccess: config.SSHAccess{User: "u"}}, Health: &config.Health{HTTP: &config.HTTPCheck{}}},
	}}
	want := strings.Join([]string{
		`pushdeploy.yaml: environments.prod.health.http: missing required key "url"`,
		`pushdeploy.yaml: environments.prod.ssh: missing required key "path"`,
		`pushdeploy.yaml: environments.staging.docker.hosts[0].port: 70000 is more than the maximum 65535`,
		`pushdeploy.yaml: environments.staging.docker.restart: "sometimes" is not one of "no", "unless-stopped", "on-failure"`,
		`pushdeploy.yaml: image: missing required key "repository"`,
	}, "\n")
	if err := f.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant:\n%s", err, want)
	}
}
