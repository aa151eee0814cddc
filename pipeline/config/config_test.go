package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/configschema"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func TestExampleParses(t *testing.T) {
	f, err := config.Load("../../examples/pushdeploy.yaml")
	if err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	data, err := os.ReadFile("../../examples/pushdeploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(data), "\n"); first != "# yaml-language-server: $schema=../schema/pushdeploy.schema.json" {
		t.Errorf("first line %q: want the yaml-language-server $schema comment", first)
	}
	if got := strings.Join(f.EnvNames(), ","); got != "staging,production,preview,cluster" {
		t.Errorf("EnvNames = %s, want the file's order", got)
	}
	st, err := f.Env("staging")
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind() != "ssh" || st.Protected || st.From != "" {
		t.Errorf("staging: kind %q protected %v from %q", st.Kind(), st.Protected, st.From)
	}
	hosts := st.Hosts()
	if len(hosts) != 3 || hosts[0].String() != "deploy@10.0.1.10:22" || hosts[1].String() != "deploy@10.0.1.11:2222" || hosts[2].String() != "ops@10.0.1.12:22" {
		t.Errorf("staging hosts = %v", hosts)
	}
	if st.Health.HTTP.URL != "http://{{.Address}}:8080/health" || st.Health.Interval.Duration != time.Second || st.Health.Retries != 30 {
		t.Errorf("staging health = %+v %+v", st.Health, st.Health.HTTP)
	}
	if st.Batches != (config.Batches{Count: 2}) || st.Lock.Wait.Duration != 2*time.Minute {
		t.Errorf("staging batches %+v lock %+v", st.Batches, st.Lock)
	}
	// The merge key brought the shared notifications in.
	if st.Notifications.Slack == nil || st.Notifications.Slack.Webhook != "SLACK_WEBHOOK" || len(st.Markers) != 1 || st.Markers[0].Token.Kind() != "name" {
		t.Errorf("staging notifications %+v markers %+v", st.Notifications, st.Markers)
	}
	pr, _ := f.Env("production")
	if pr.Kind() != "ssh" || !pr.Protected || pr.From != "staging" || pr.Batches != (config.Batches{Percent: 25}) || !pr.Hooks.ContinueOnFailure {
		t.Errorf("production: kind %q protected %v from %q batches %+v", pr.Kind(), pr.Protected, pr.From, pr.Batches)
	}
	if pr.SSH.Jump.String() != "bastion.example.com:2222" {
		t.Errorf("production jump = %v", pr.SSH.Jump)
	}
	if r := pr.SSH.Key; r.Kind() != "env" || r.Name() != "SSH_KEY" {
		t.Errorf("production key = %q: kind %q name %q", r, r.Kind(), r.Name())
	}
	pv, _ := f.Env("preview")
	if pv.Kind() != "docker" || pv.Docker.StopTimeout.Duration != 20*time.Second || pv.Docker.CPUs != 1.5 || pv.Docker.SecretEnv["DATABASE_URL"] != "DATABASE_URL" {
		t.Errorf("preview docker = %+v", pv.Docker)
	}
	k, _ := f.Env("cluster")
	if k.Kind() != "kubernetes" || len(k.Kubernetes.Deployments) != 2 || k.Kubernetes.Deployments[0].Name != "web" || k.Kubernetes.Deployments[1].Containers[0] != "worker" {
		t.Errorf("cluster = %+v", k.Kubernetes)
	}
	if !f.Image.Tags.CommitTag() || !f.Image.Tags.Latest || f.Line("environments.production.from") == 0 {
		t.Errorf("image tags %+v, line of production.from %d", f.Image.Tags, f.Line("environments.production.from"))
	}
}

func TestSchemaIsCurrent(t *testing.T) {
	want, err := configschema.Generate(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../schema/pushdeploy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schema/pushdeploy.schema.json is stale: run go generate ./pipeline/config")
	}
}

func TestEnvUnknownListsKnown(t *testing.T) {
	f, err := config.Load("../../examples/pushdeploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Env("prod")
	want := `environment "prod" is not in ../../examples/pushdeploy.yaml: the environments are "staging", "production", "preview", "cluster"`
	if err == nil || err.Error() != want {
		t.Errorf("Env(prod) = %v\nwant %s", err, want)
	}
}

// base is a valid file; the cases below break it one way each.
const base = `app: web
environments:
  staging:
    ssh:
      hosts: [10.0.0.1]
      user: deploy
      path: /srv/web
`

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", base + `    health:
      http: {url: "http://{{.Address}}/"}
      intervall: 3s
`, []string{`pushdeploy.yaml:10: environments.staging.health.intervall: unknown key "intervall", did you mean "interval"?`}},
		{"unknown key far from any", base + "    colour: blue\n",
			[]string{`pushdeploy.yaml:8: environments.staging.colour: unknown key "colour" (known keys: ssh, docker, kubernetes, url, protected, from, health, batches, keep, lock, bake, steps, analysis, hooks, notifications, markers)`}},
		{"wrong type int", base + "    keep: many\n",
			[]string{`pushdeploy.yaml:8: environments.staging.keep: expected an integer, got the string "many"`}},
		{"wrong type bool", base + "    protected: 1\n",
			[]string{`pushdeploy.yaml:8: environments.staging.protected: expected true or false, got the integer "1"`}},
		{"wrong type list", "app: [web]\n" + base[len("app: web\n"):],
			[]string{`pushdeploy.yaml:1: app: expected a string, got a list`}},
		{"wrong type mapping", base + "    lock: {wait: {s: 1}}\n",
			[]string{`pushdeploy.yaml:8: environments.staging.lock.wait: expected a duration like "30s", got a mapping`}},
		{"duration without unit", base + "    lock: {ttl: 30}\n",
			[]string{`pushdeploy.yaml:8: environments.staging.lock.ttl: invalid duration "30": write it with a unit, like "30s" or "5m"`}},
		{"missing required", "app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [10.0.0.1]\n      user: deploy\n",
			[]string{`pushdeploy.yaml:4: environments.staging.ssh: missing required key "path"`}},
		{"missing app", "environments: {}\n",
			[]string{`pushdeploy.yaml:1: missing required key "app"`}},
		{"batch percent", base + "    batches: 150%\n",
			[]string{`pushdeploy.yaml:8: environments.staging.batches: invalid batch percentage "150%": must be from 1% to 100%`}},
		{"enum", base + "    hooks: {where: everywhere}\n",
			[]string{`pushdeploy.yaml:8: environments.staging.hooks.where: "everywhere" is not one of "container", "hosts"`}},
		{"minimum", base + "    keep: 1\n",
			[]string{`pushdeploy.yaml:8: environments.staging.keep: 1 is less than the minimum 2`}},
		{"bad host", "app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [\"10.0.0.1:99999\"]\n      user: deploy\n      path: /srv/web\n",
			[]string{`pushdeploy.yaml:5: environments.staging.ssh.hosts[0]: invalid port "99999" in host "10.0.0.1:99999": must be a number from 1 to 65535`}},
		{"from unknown", base + "  production:\n    from: stagin\n    ssh: {hosts: [h], user: u, path: /p}\n",
			[]string{`pushdeploy.yaml:9: environments.production.from: environment "stagin" is not in the file (known: "staging", "production")`}},
		{"from another kind", base + "  production:\n    from: staging\n    docker: {hosts: [h], user: u}\n",
			[]string{`pushdeploy.yaml:9: environments.production.from: a docker environment cannot promote from "staging", an ssh environment: promote files from ssh to ssh, images between docker and kubernetes`}},
		{"from itself", base + "    from: staging\n",
			[]string{`pushdeploy.yaml:8: environments.staging.from: an environment cannot promote from itself`}},
		{"promotion cycle", base + "    from: production\n  production:\n    from: staging\n    ssh: {hosts: [h], user: u, path: /p}\n",
			[]string{
				`pushdeploy.yaml:8: environments.staging.from: promotion cycle: staging <- production <- staging`,
				`pushdeploy.yaml:10: environments.production.from: promotion cycle: production <- staging <- production`,
			}},
		{"two targets", base + "    docker: {hosts: [h], user: u}\n",
			[]string{`pushdeploy.yaml:3: environments.staging: has ssh and docker: give exactly one target`}},
		{"no target", "app: web\nenvironments:\n  staging:\n    protected: true\n",
			[]string{`pushdeploy.yaml:3: environments.staging: needs a target: one of ssh, docker, kubernetes`}},
		{"kubernetes without deployments", "app: web\nenvironments:\n  k:\n    kubernetes:\n      namespace: web\n",
			[]string{`pushdeploy.yaml:4: environments.k.kubernetes: missing required key "deployments"`}},
		{"kubernetes empty deployments", "app: web\nenvironments:\n  k:\n    kubernetes:\n      deployments: []\n",
			[]string{`pushdeploy.yaml:5: environments.k.kubernetes.deployments: needs at least one entry`}},
		{"kubernetes command health", "app: web\nenvironments:\n  k:\n    kubernetes: {deployments: [web]}\n    health: {command: \"true\"}\n",
			[]string{`pushdeploy.yaml:5: environments.k.health.command: a command check runs on hosts: kubernetes environments use http`}},
		{"blue-green needs two ports", "app: web\nenvironments:\n  k:\n    docker:\n      hosts: [a]\n      user: d\n      blue_green: {ports: [8081], switch: \"true\"}\n",
			[]string{`pushdeploy.yaml:7: environments.k.docker.blue_green.ports: needs at least 2 entries`}},
		{"kubernetes health by host address", "app: web\nenvironments:\n  k:\n    kubernetes: {deployments: [web]}\n    health:\n      http: {url: \"http://{{.Address}}:8080/health\"}\n",
			[]string{`pushdeploy.yaml:6: environments.k.health.http.url: kubernetes Deployments have no address of their own: give the URL of the service (the rollout's own status already checks every pod)`}},
		{"no user", "app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [a, {host: b, user: x}]\n      path: /srv\n",
			[]string{`pushdeploy.yaml:5: environments.staging.ssh.hosts[0]: no SSH user: set user on the host or on the target`}},
		{"health url template", base + "    health: {http: {url: \"http://{{.Adress}}/health\"}}\n",
			[]string{`pushdeploy.yaml:8: environments.staging.health.http.url: the template uses something other than {{.Address}}, {{.Host}}, {{.Release}}, {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}} and {{.Env}}: template: url:1:9: executing "url" at <.Adress>: can't evaluate field Adress in type struct { Address string; Host string; Release string; Version string; Digest string; Image string; App string; Env string }`}},
		{"marker template", base + "    markers: [{url: \"https://m.example.com/\", body: \"{{json .Service\"}]\n",
			[]string{`pushdeploy.yaml:8: environments.staging.markers[0].body: invalid template: template: body:1: unclosed action`}},
		{"duplicate key", base + "    keep: 3\n    keep: 4\n",
			[]string{`pushdeploy.yaml:9: environments.staging.keep: key "keep" appears twice (first on line 8)`}},
		{"syntax", "app: web\nenvironments:\n  staging: [\n",
			[]string{`pushdeploy.yaml:3: invalid YAML: did not find expected node content`}},
		{"empty", "", []string{`pushdeploy.yaml: the file is empty`}},
		{"only comments", "# app: web\n", []string{`pushdeploy.yaml: the file is empty`}},
		{"null", "~\n", []string{`pushdeploy.yaml: the file is empty`}},
		{"not a mapping", "- app\n", []string{`pushdeploy.yaml:1: expected a mapping, got a list`}},
		{"alias", "app: web\nenvironments:\n  s:\n    ssh: &x {hosts: [h], user: u, path: /p, zzqx: 1}\n  t:\n    ssh: *x\n", []string{
			`pushdeploy.yaml:4: environments.s.ssh.zzqx: unknown key "zzqx" (known keys: hosts, user, port, key, known_hosts, jump, path, restart, restart_timeout, shared, checksum, logs)`,
			`pushdeploy.yaml:4: environments.t.ssh.zzqx: unknown key "zzqx" (known keys: hosts, user, port, key, known_hosts, jump, path, restart, restart_timeout, shared, checksum, logs)`,
		}},
		{"two documents", base + "---\napp: other\n", []string{`pushdeploy.yaml:8: the file holds more than one YAML document`}},
		{"several at once", base + "    keep: many\n    batches: 0\n    lock: {wait: soon}\n",
			[]string{
				`pushdeploy.yaml:8: environments.staging.keep: expected an integer, got the string "many"`,
				`pushdeploy.yaml:9: environments.staging.batches: invalid batches "0": write a number of hosts (at least 1) or a percentage like "25%"`,
				`pushdeploy.yaml:10: environments.staging.lock.wait: invalid duration "soon": write it with a unit, like "30s" or "5m"`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := config.Parse("pushdeploy.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("parsed without error: %+v", f)
			}
			var es config.Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not config.Errors: %v", err, err)
			}
			if got := err.Error(); got != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestSecretValuesRejected puts secret values where secret names belong: each is an error
// that names the key and never repeats the value.
func TestSecretValuesRejected(t *testing.T) {
	const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\\n-----END OPENSSH PRIVATE KEY-----"
	secrets := []string{"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "T0123/B0456/abcdefSECRET", "xoxb-1234-abcd", "ghp_abcdefghijklmnop1234", "hunter2-Secret!", "s3cr3tWebhookKey"}
	yaml := base + `    notifications:
      slack: {webhook: "https://hooks.slack.com/services/T0123/B0456/abcdefSECRET"}
      webhook: {url: "https://hooks.example.com/x?token=s3cr3tWebhookKey"}
    markers:
      - url: https://user:hunter2-Secret!@markers.example.com/api
        token: xoxb-1234-abcd
      - url: https://markers.example.com/api
        token: GHP_ABCDEFGHIJKLMNOP1234
  production:
    docker:
      hosts: [h]
      user: u
      key: "` + pem + `"
      env: {API_TOKEN: ghp_abcdefghijklmnop1234}
`
	_, err := config.Parse("pushdeploy.yaml", []byte(yaml))
	if err == nil {
		t.Fatal("parsed without error")
	}
	want := []string{
		`pushdeploy.yaml:9: environments.staging.notifications.slack.webhook: holds a URL: a URL with credentials (a Slack webhook) is a secret itself; put it in a secret and name it here (NAME, env:NAME or file:PATH)`,
		`pushdeploy.yaml:10: environments.staging.notifications.webhook.url: the URL's query parameter "token" looks like a credential: name a secret for it instead`,
		`pushdeploy.yaml:12: environments.staging.markers[0].url: the URL holds a user or password: name a secret for the credential instead`,
		`pushdeploy.yaml:13: environments.staging.markers[0].token: looks like a secret value, not a secret's name: give NAME (upper-case letters, digits, underscores), env:NAME or file:PATH, and pass the value as a secret`,
		`pushdeploy.yaml:15: environments.staging.markers[1].token: looks like a credential (a known token format), not a secret's name: pass the value as a secret and name it here`,
		`pushdeploy.yaml:20: environments.production.docker.key: holds a PEM block (a key or certificate): put it in a secret and name it here (NAME, env:NAME or file:PATH)`,
		`pushdeploy.yaml:21: environments.production.docker.env.API_TOKEN: the name says it is a secret, so its value does not belong in the file: move it to secret_env and name the secret`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	_, err2 := config.Parse("pushdeploy.yaml", []byte(base+"  production:\n    docker:\n      hosts: [h]\n      user: u\n      env: {API_TOKEN: ghp_abcdefghijklmnop1234}\n"))
	want2 := `pushdeploy.yaml:12: environments.production.docker.env.API_TOKEN: the name says it is a secret, so its value does not belong in the file: move it to secret_env and name the secret`
	if err2 == nil || err2.Error() != want2 {
		t.Errorf("got:\n%v\nwant:\n%s", err2, want2)
	}
	for _, e := range []error{err, err2} {
		for _, s := range secrets {
			if e != nil && strings.Contains(strings.ToLower(e.Error()), strings.ToLower(s)) {
				t.Errorf("an error repeats the secret %q", s)
			}
		}
	}
}

func TestValidateFileBuiltInCode(t *testing.T) {
	f := &config.File{App: "web", Environments: map[string]*config.Environment{
		"staging": {SSH: &config.SSHTarget{Hosts: []config.HostSpec{{Host: "h"}}, SSHAccess: config.SSHAccess{User: "u", Key: "-----BEGIN KEY"}, Path: "srv"}},
		"prod":    {From: "qa", Kubernetes: &config.KubernetesTarget{Deployments: []config.Deployment{{Name: "web"}}}},
	}}
	want := strings.Join([]string{
		`pushdeploy.yaml: environments.prod.from: environment "qa" is not in the file (known: "prod", "staging")`,
		`pushdeploy.yaml: environments.staging.ssh.key: holds a PEM block (a key or certificate): put it in a secret and name it here (NAME, env:NAME or file:PATH)`,
		`pushdeploy.yaml: environments.staging.ssh.path: "srv" is not an absolute path`,
	}, "\n")
	if err := f.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant:\n%s", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "pushdeploy.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "reading environments file: open ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestSends(t *testing.T) {
	for _, tc := range []struct {
		on        []string
		succeeded bool
		want      bool
	}{
		{nil, true, true}, {nil, false, true},
		{[]string{"failure"}, true, false}, {[]string{"failure"}, false, true},
		{[]string{"success"}, true, true}, {[]string{"success"}, false, false},
	} {
		if got := config.Sends(tc.on, tc.succeeded); got != tc.want {
			t.Errorf("Sends(%v, %v) = %v, want %v", tc.on, tc.succeeded, got, tc.want)
		}
	}
}

func parseString(s string) (*config.File, error) { return config.Parse("pushdeploy.yaml", []byte(s)) }

func TestSecrets(t *testing.T) {
	f, err := config.Load("../../examples/pushdeploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	uses, err := f.Secrets("preview")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range uses {
		got = append(got, u.Path+"="+string(u.Ref))
	}
	want := []string{
		"environments.preview.docker.key=env:SSH_KEY",
		"environments.preview.docker.known_hosts=file:.ci/known_hosts",
		"environments.preview.docker.secret_env.DATABASE_URL=DATABASE_URL",
		"image.password=REGISTRY_PASSWORD",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Secrets(preview):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := f.Secrets("nope"); err == nil {
		t.Error("Secrets(nope) did not fail")
	}
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("../../examples/pushdeploy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := config.Parse("pushdeploy.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
