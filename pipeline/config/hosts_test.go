package config_test

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Issue 11, case 7: every host and user field is validated, in whatever form it is given
// (the object form used to skip what the string form got).
func TestHostAndUserFieldsValidatedInEveryForm(t *testing.T) {
	env := func(target, body string) string {
		return "app: web\nenvironments:\n  staging:\n    " + target + ":\n" + body
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"object host", env("ssh", "      hosts: [{host: ';rm -rf /'}]\n      user: deploy\n      path: /srv/web\n"),
			`environments.staging.ssh.hosts[0]: invalid host ";rm -rf /"`},
		{"object user", env("ssh", "      hosts: [{host: 10.0.0.1, user: 'a;b'}]\n      user: deploy\n      path: /srv/web\n"),
			`environments.staging.ssh.hosts[0].user: invalid SSH user "a;b"`},
		{"string host with a semicolon", env("ssh", "      hosts: [';reboot']\n      user: deploy\n      path: /srv/web\n"),
			`environments.staging.ssh.hosts[0]: invalid host ";reboot"`},
		{"target user", env("docker", "      hosts: [10.0.0.1]\n      user: '$(id)'\n"),
			`environments.staging.docker.user: invalid SSH user "$(id)"`},
		{"jump host", env("ssh", "      hosts: [10.0.0.1]\n      user: deploy\n      path: /srv/web\n      jump: {host: 'a`b`'}\n"),
			`environments.staging.ssh.jump: invalid host "a` + "`b`" + `"`},
		{"jump user", env("ssh", "      hosts: [10.0.0.1]\n      user: deploy\n      path: /srv/web\n      jump: {host: bastion, user: '-oProxyCommand=x'}\n"),
			`environments.staging.ssh.jump.user: invalid SSH user "-oProxyCommand=x"`},
		{"docker object host", env("docker", "      hosts: [{host: 'h&&x', user: deploy}]\n"),
			`environments.staging.docker.hosts[0]: invalid host "h&&x"`},
	} {
		_, err := config.Parse("pushdeploy.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	for _, ok := range []string{
		env("ssh", "      hosts: [web-1.example.com, '10.0.0.1:2222', '[::1]:22', {host: 'fe80::1', user: ops.admin}, {host: web_2, port: 22, user: deploy-ci}]\n      user: deploy\n      path: /srv/web\n      jump: bastion.example.com:2222\n"),
	} {
		if _, err := config.Parse("pushdeploy.yaml", []byte(ok)); err != nil {
			t.Errorf("valid hosts refused: %v", err)
		}
	}
}
