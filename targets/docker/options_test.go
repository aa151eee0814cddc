package docker

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func TestNewRejectsBadInput(t *testing.T) {
	key := WithSSH(sshconn.PrivateKey([]byte("k")), sshconn.KnownHosts([]byte("kh")))
	for _, tc := range []struct {
		name  string
		app   string
		hosts []string
		opts  []Option
		want  string
	}{
		{"app", "my app", []string{"h"}, []Option{key}, `app "my app"`},
		{"no hosts", "web", nil, []Option{key}, "no hosts"},
		{"twice", "web", []string{"h", "h"}, []Option{key}, `host "h" is listed twice`},
		{"no ssh", "web", []string{"h"}, nil, "no SSH options"},
		{"ports with host network", "web", []string{"h"}, []Option{key, WithPorts("8080:8080"), WithNetwork("host")}, "host networking"},
		{"port without host port", "web", []string{"h"}, []Option{key, WithPorts("8080")}, "give the host port"},
		{"bad port", "web", []string{"h"}, []Option{key, WithPorts("80:eighty")}, `ports ["80:eighty"]`},
		{"always", "web", []string{"h"}, []Option{key, WithRestartPolicy("always")}, "kept for rollback"},
		{"restart count", "web", []string{"h"}, []Option{key, WithRestartPolicy("on-failure:x")}, "count"},
		{"socket", "web", []string{"h"}, []Option{key, WithSocket("docker.sock")}, `socket "docker.sock"`},
		{"env", "web", []string{"h"}, []Option{key, WithEnv("TOKEN")}, `"TOKEN": want NAME=value`},
		{"env of unknown host", "web", []string{"h"}, []Option{key, WithHostEnv("g", "A=1")}, `host "g"`},
		{"volume", "web", []string{"h"}, []Option{key, WithVolumes("data")}, `volume "data"`},
		{"memory", "web", []string{"h"}, []Option{key, WithMemory("lots")}, `memory limit "lots"`},
		{"cpus", "web", []string{"h"}, []Option{key, WithCPUs(0)}, "cpus 0"},
		{"registry", "web", []string{"h"}, []Option{key, WithRegistryAuth("r.example", "u", "")}, "user and password"},
		{"registry host", "web", []string{"h"}, []Option{key, WithRegistryAuth("r.example/repo", "u", "p")}, `registry "r.example/repo"`},
		{"state dir", "web", []string{"h"}, []Option{key, WithStateDir("../state")}, `state directory "../state"`},
		{"container name", "web", []string{"h"}, []Option{key, WithContainerName("-web")}, `container name "-web"`},
		{"slots equal", "web", []string{"h"}, []Option{key, WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8081}, ContainerPort: 80, Switch: "x"})}, "must differ"},
		{"slot range", "web", []string{"h"}, []Option{key, WithBlueGreen(BlueGreen{Ports: [2]int{0, 8081}, ContainerPort: 80, Switch: "x"})}, "between 1 and 65535"},
		{"no switch", "web", []string{"h"}, []Option{key, WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8082}, ContainerPort: 80})}, "no switch command"},
		{"bad switch", "web", []string{"h"}, []Option{key, WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8082}, ContainerPort: 80, Switch: "{{.Port"})}, "switch command"},
		{"no container port", "web", []string{"h"}, []Option{key, WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8082}, Switch: "x"})}, "ContainerPort"},
		{"host network without env", "web", []string{"h"}, []Option{key, WithNetwork("host"), WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8082}, Switch: "x"})}, "PORT={{.Port}}"},
		{"blue-green with ports", "web", []string{"h"}, []Option{key, WithPorts("80:80"), WithBlueGreen(BlueGreen{Ports: [2]int{8081, 8082}, ContainerPort: 80, Switch: "x"})}, "cannot share a host port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.app, "prod", tc.hosts, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestSecretEnvValueNeverInErrors(t *testing.T) {
	for _, bad := range []string{"=s3cr3t-value", "s3cr3t-value", "BAD NAME=s3cr3t"} {
		_, err := New("web", "prod", []string{"h"}, WithSSH(sshconn.PrivateKey([]byte("k"))), WithEnv("GOOD=1", bad))
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "#2") {
			t.Errorf("error = %v: want a refusal of entry #2 without the value", err)
		}
	}
}

func TestCheckRelease(t *testing.T) {
	tg, err := New("web", "prod", []string{"h"}, WithSSH(sshconn.PrivateKey([]byte("k"))))
	if err != nil {
		t.Fatal(err)
	}
	h := tg.hosts[0]
	dg := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		id, image, digest, want string
	}{
		{"r1", "127.0.0.1:5000/web:v1", "", "not pinned by digest"},
		{"r1", "127.0.0.1:5000/web@" + dg, "sha256:" + strings.Repeat("cd", 32), "does not carry the release's digest"},
		{"r/1", "127.0.0.1:5000/web@" + dg, dg, `release id "r/1"`},
		{"r1", "", dg, "no image"},
		{"r1", "127.0.0.1:5000/web@" + dg, dg, ""},
	} {
		err := h.checkRelease(releaseOf(tc.id, tc.image, tc.digest))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %s: error = %v, want %q", tc.id, tc.image, err, tc.want)
		}
	}
}

func releaseOf(id, image, digest string) targets.Release {
	return targets.Release{ID: id, Image: image, Digest: digest}
}
