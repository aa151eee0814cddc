package pipeline_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestCheckRegistryCredentials: check of a docker environment whose image has a registry
// login asks the registry (distribution with htpasswd) for the pull scope: the right
// password passes, a wrong one fails the row naming the registry and the user, never the
// password, and fails the check.
func TestCheckRegistryCredentials(t *testing.T) {
	d := testbench.SharedDockerd(t)
	reg := testbench.DistributionRegistry(t)
	hosts := testbench.SSHHosts(t, 1)
	src := fmt.Sprintf(`app: web
image:
  registry: %s
  repository: acme/web
  username: %s
  password: REGISTRY_PASSWORD
environments:
  staging:
    docker:
      hosts: [%q]
      user: %s
      socket: %s
      state_dir: %s
`, reg.Host, reg.User, hosts[0].Addr, hosts[0].User, d.Socket, hosts[0].Dir)
	f, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	check := func(password string) (*pipeline.CheckReport, pipeline.CheckItem) {
		t.Helper()
		x := &pipeline.Environments{File: f, Targets: assemble.Maker(assemble.Extra{}), Secrets: pipeline.Secrets{
			SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts),
			Named: map[string][]byte{"REGISTRY_PASSWORD": []byte(password)}}}
		rep, err := x.Check(t.Context(), "staging")
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range rep.Target {
			if it.Check == pipeline.CheckRegistry {
				return rep, it
			}
		}
		t.Fatalf("no %q row in %+v", pipeline.CheckRegistry, rep.Target)
		return nil, pipeline.CheckItem{}
	}
	rep, it := check(reg.Password)
	if !it.OK || !rep.OK || pipeline.CheckError(rep) != nil {
		t.Errorf("the right password: %+v (report %+v)", it, rep)
	}
	wrong := "wrong-" + reg.Password
	rep, it = check(wrong)
	t.Logf("wrong password: %s", it.Detail)
	if it.OK || rep.OK || !strings.Contains(it.Detail, reg.Host) || !strings.Contains(it.Detail, fmt.Sprintf("%q", reg.User)) || !strings.Contains(it.Detail, "401") {
		t.Errorf("a wrong password: %+v", it)
	}
	err = pipeline.CheckError(rep)
	for _, s := range []string{it.Detail, fmt.Sprint(err)} {
		if strings.Contains(s, wrong) || strings.Contains(s, reg.Password) {
			t.Errorf("the password is shown: %s", s)
		}
	}
	if err == nil || !strings.Contains(err.Error(), pipeline.CheckRegistry) {
		t.Errorf("check error: %v", err)
	}
}
