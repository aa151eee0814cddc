package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

// parsed is a command with the common flags, parsed from args.
func parsed(t *testing.T, args ...string) (*common, *cobra.Command) {
	t.Helper()
	var c common
	cmd := &cobra.Command{Use: "x"}
	c.flags(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return &c, cmd
}

func TestBindFlags(t *testing.T) {
	c, cmd := parsed(t,
		"--app", "web", "--kind", "kubernetes", "--hosts", "a,b", "--hosts", "c", "--port", "2222", "--cpus", "1.5",
		"--deployment", "web=app,sidecar", "--deployment", "worker", "--env-var", "A=1,2", "--image-latest", "--health-retries", "3",
	)
	want := config.Settings{
		App: "web", Kind: "kubernetes", Hosts: []string{"a", "b", "c"}, Port: 2222, CPUs: 1.5,
		Deployments: []string{"web=app,sidecar", "worker"}, EnvVars: []string{"A=1,2"}, ImageLatest: true, HealthRetries: 3,
	}
	if !reflect.DeepEqual(c.settings, want) {
		t.Errorf("settings:\n%+v\nwant:\n%+v", c.settings, want)
	}
	got := givenSettings(cmd.Flags())
	if w := []string{"--app", "--cpus", "--deployment", "--env-var", "--health-retries", "--hosts", "--image-latest", "--kind", "--port"}; !reflect.DeepEqual(got, w) {
		t.Errorf("given = %v, want %v", got, w)
	}
	// Every setting but the commands' own --env is a flag; no flag is a setting twice.
	for _, sf := range config.SettingFields() {
		f := cmd.Flags().Lookup(sf.Flag)
		switch {
		case sf.Own && f != nil && f.Annotations[settingAnnotation] != nil:
			t.Errorf("--%s is the commands' own, but BindFlags bound it", sf.Flag)
		case !sf.Own && f == nil:
			t.Errorf("no flag --%s for Settings.%s", sf.Flag, sf.Field)
		}
	}
}

const stagingFile = `app: web
environments:
  staging:
    docker:
      hosts: [a]
      user: deploy
    health:
      command: "true"
`

func TestLoad(t *testing.T) {
	dockerFlags := []string{"--app", "web", "--kind", "docker", "--hosts", "10.0.0.1,ops@10.0.0.2:2222", "--user", "deploy",
		"--health-url", "http://{{.Address}}:8080/health", "--batch", "1", "--protected"}
	for _, tc := range []struct {
		name    string
		file    string // ./pushdeploy.yaml, "" for none
		args    []string
		env     string
		check   func(t *testing.T, f *config.File)
		wantErr string
	}{
		{name: "flags make the environment", args: dockerFlags, env: "staging", check: func(t *testing.T, f *config.File) {
			e, err := f.Env("staging")
			if err != nil {
				t.Fatal(err)
			}
			want := []config.HostSpec{{Host: "10.0.0.1", User: "deploy", Port: 22}, {Host: "10.0.0.2", User: "ops", Port: 2222}}
			if f.App != "web" || e.Kind() != "docker" || !reflect.DeepEqual(e.Hosts(), want) || !e.Protected || e.Batches.Count != 1 || e.Health.HTTP == nil {
				t.Errorf("app %q, environment %+v, hosts %v", f.App, e, e.Hosts())
			}
		}},
		{name: "no file, no flags", env: "staging",
			wantErr: "no pushdeploy.yaml here: give its path (--file), or describe the environment with flags (--app, --kind, --hosts, ...; see --help)"},
		{name: "bad flags", args: []string{"--app", "web", "--kind", "docker", "--hosts", "h", "--health-interval", "3x", "--path", "/srv"}, env: "staging",
			wantErr: "no pushdeploy.yaml here, so the flags describe the environment:\n" +
				`--path: is for ssh environments: "staging" is a docker environment`},
		{name: "bad values", args: []string{"--app", "web", "--kind", "docker", "--hosts", "h", "--health-command", "true", "--health-interval", "3x", "--keep", "1"}, env: "staging",
			wantErr: "no pushdeploy.yaml here, so the flags describe the environment:\n" + strings.Join([]string{
				`--health-interval: invalid duration "3x": write it with a unit, like "30s" or "5m"`,
				`--hosts "h": no SSH user: give --user, or user@host in --hosts`,
				`--keep: 1 is less than the minimum 2`,
			}, "\n")},
		{name: "no env", args: dockerFlags,
			wantErr: "no pushdeploy.yaml here, so the flags describe the environment:\n--env: is required: it names the environment"},
		{name: "file, no flags", file: stagingFile, env: "staging", check: func(t *testing.T, f *config.File) {
			if h := f.Environments["staging"].Hosts(); len(h) != 1 || h[0].Host != "a" {
				t.Errorf("hosts %v", h)
			}
		}},
		{name: "flags override the file", file: stagingFile, args: []string{"--hosts", "b,c", "--keep", "3"}, env: "staging", check: func(t *testing.T, f *config.File) {
			e := f.Environments["staging"]
			if h := e.Hosts(); len(h) != 2 || h[0].Host != "b" || h[1].User != "deploy" || e.Keep != 3 || e.Health.Command != "true" {
				t.Errorf("hosts %v, keep %d, health %+v", h, e.Keep, e.Health)
			}
		}},
		{name: "override needs an environment", file: stagingFile, args: []string{"--hosts", "b"},
			wantErr: "--hosts override an environment of pushdeploy.yaml: say which with --env"},
		{name: "override of another kind", file: stagingFile, args: []string{"--namespace", "x"}, env: "staging",
			wantErr: "overriding environment \"staging\" of pushdeploy.yaml:\n" + `--namespace: is for kubernetes environments: "staging" is a docker environment`},
		{name: "a file named but missing", args: append([]string{"--file", "other.yaml"}, dockerFlags...), env: "staging",
			wantErr: "reading environments file: open other.yaml: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if tc.file != "" {
				if err := os.WriteFile(config.DefaultFile, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, cmd := parsed(t, tc.args...)
			f, err := c.load(cmd.Flags(), tc.env)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got:\n%v\nwant:\n%s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, f)
		})
	}
}

// The commands take the settings flags: each reaches the point where it would make the
// target, or stops at a bad flag with the flag's name.
func TestCommandsTakeSettings(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, command := range []string{"deploy", "rollback", "status", "plan", "history", "unlock"} {
		_, err := run(t, command, "--env", "staging", "--app", "web", "--kind", "docker", "--hosts", "h", "--user", "u", "--lock-ttl", "5")
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "--lock-ttl" {
			t.Errorf("%s: %v", command, err)
		}
	}
	out, err := run(t, "status", "--help")
	if err != nil || !strings.Contains(out, "Environment settings, without an environments file") || !strings.Contains(out, "--health-url string") {
		t.Errorf("status --help: %v\n%s", err, out)
	}
}

// Without a file, the flags alone reach a real target: a docker environment on a real sshd
// host answers unlock and history (its lock and records live in files over SSH). The login
// is not root: root's shell startup here is slow and not what is tested. The host is this
// machine, so the test makes the target's state directory the login's own, under a name of
// its own.
func TestNoFileRealHost(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))
	h := hosts[0]
	app := fmt.Sprintf("cli-settings-%d", os.Getpid())
	state := filepath.Join(docker.DefaultStateDir, app+"-staging")
	u, err := user.Lookup(h.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chown(state, uid, -1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	os.WriteFile(key, h.ClientKey, 0o600)
	os.WriteFile(kh, h.KnownHosts, 0o644)
	t.Chdir(dir)
	args := []string{"--env", "staging", "--app", app, "--kind", "docker", "--hosts", h.Addr, "--user", h.User,
		"--ssh-key", "file:" + key, "--known-hosts", "file:" + kh}
	out, err := run(t, append([]string{"unlock"}, args...)...)
	if err != nil || out != "staging was not locked\n" {
		t.Fatalf("unlock: %v\n%s", err, out)
	}
	// No records yet; the host's engine is not there, which history says beside them.
	out, err = run(t, append([]string{"history", "-o", "json"}, args...)...)
	if err != nil || !strings.Contains(out, `"records": []`) || !strings.Contains(out, `"keptError": "host`) {
		t.Fatalf("history: %v\n%s", err, out)
	}
}
