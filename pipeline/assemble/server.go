package assemble

import (
	"path"
	"strconv"
	"strings"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

func server(app, name string, env *config.Environment, s *pipeline.Secrets, extra Extra) (targets.Target, error) {
	c := env.SSH
	key, kh, err := s.SSHCredentials(c.SSHAccess)
	if err != nil {
		return nil, err
	}
	opts := []ssh.Option{ssh.PrivateKey(key), ssh.KnownHosts(kh), ssh.Path(c.Path)}
	if c.User != "" {
		opts = append(opts, ssh.User(c.User))
	}
	if c.Jump != nil {
		opts = append(opts, ssh.Jump(hostPort(*c.Jump)))
	}
	if c.Restart != "" {
		opts = append(opts, ssh.Restart(c.Restart))
	}
	if c.RestartTimeout.Duration > 0 {
		opts = append(opts, ssh.RestartTimeout(c.RestartTimeout.Duration))
	}
	if c.Logs != "" {
		opts = append(opts, ssh.Logs(c.Logs))
	}
	if len(env.Hooks.Updated) > 0 {
		// Run in the staged release before the switch, bounded as every hook is.
		opts = append(opts, ssh.Updated(env.Hooks.Updated...))
		if d := env.Hooks.Timeout.Duration; d > 0 {
			opts = append(opts, ssh.UpdatedTimeout(d))
		}
	}
	if c.Checksum {
		opts = append(opts, ssh.Checksum())
	}
	dirs, files := splitShared(c.Shared)
	if len(dirs) > 0 {
		opts = append(opts, ssh.Shared(dirs...))
	}
	if len(files) > 0 {
		opts = append(opts, ssh.SharedFiles(files...))
	}
	var hosts []ssh.HostConfig
	for _, h := range env.Hosts() {
		hosts = append(hosts, ssh.HostConfig{Addr: h.Host + ":" + strconv.Itoa(h.Port), User: h.User})
	}
	return ssh.New(app, name, hosts, append(opts, extra.Server...)...)
}

// splitShared tells shared directories from shared files, as Capistrano's linked_dirs and
// linked_files: a path ending in "/" is a directory, else one whose last element has a dot
// (.env, config/database.yml) is a file, else a directory (logs, public/uploads).
func splitShared(paths []string) (dirs, files []string) {
	for _, p := range paths {
		switch {
		case strings.HasSuffix(p, "/"):
			dirs = append(dirs, strings.TrimSuffix(p, "/"))
		case strings.Contains(path.Base(p), "."):
			files = append(files, p)
		default:
			dirs = append(dirs, p)
		}
	}
	return dirs, files
}
