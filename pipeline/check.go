package pipeline

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// The checks Check runs, in the order of a host's table.
const (
	CheckReachable = "reachable"
	CheckHostKey   = "host key known"
	CheckLogin     = "login"
	CheckPath      = "deploy path writable"
	CheckDisk      = "free disk"
	CheckRestart   = "restart program"
	CheckTarget    = "target preflight"
	CheckRegistry  = "registry credentials"
)

// CheckItem is one check on one host: passed, failed (Detail says why) or skipped (an
// earlier check failed, or it does not apply).
type CheckItem struct {
	Check   string `json:"check"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// HostCheck is every check on one host.
type HostCheck struct {
	Host   string      `json:"host"`
	Checks []CheckItem `json:"checks"`
}

// CheckReport is an environment checked before a deploy, with nothing changed.
type CheckReport struct {
	Env   string      `json:"env"`
	Kind  string      `json:"kind"`
	Hosts []HostCheck `json:"hosts"`
	// Target is what the target checks as a whole (its Preflight: the Docker socket and
	// state directory of every host, Kubernetes permissions by SelfSubjectAccessReview).
	Target []CheckItem `json:"target,omitempty"`
	OK     bool        `json:"ok"`
}

// Check checks, per host and changing nothing, what a deploy of the named environment
// needs: ssh and docker hosts reachable, their host key known, the login accepted; for ssh
// the deploy path writable, the free disk (at least the live release's size) and the
// restart command's program present; then the target's own preflight (docker: the engine's
// socket and the state directory; kubernetes: every permission the target uses, by
// SelfSubjectAccessReview, and the Deployments). The report says what failed; CheckError
// turns it into an error.
func (x *Environments) Check(ctx context.Context, name string) (*CheckReport, error) {
	env, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	rep := &CheckReport{Env: name, Kind: e.t.Kind()}
	hosts := e.t.Hosts()
	rep.Hosts = make([]HostCheck, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Hosts[i] = checkHost(ctx, env, h)
		}()
	}
	wg.Wait()
	// A server target's preflight is the hosts' own first checks again (login, path).
	if p, ok := e.t.(targets.Preflighter); ok && e.t.Kind() != "ssh" {
		it := CheckItem{Check: CheckTarget, OK: true}
		if err := p.Preflight(ctx); err != nil {
			it.OK, it.Detail = false, err.Error()
		}
		rep.Target = append(rep.Target, it)
	}
	if it, ok := x.checkRegistry(ctx, env); ok {
		rep.Target = append(rep.Target, it)
	}
	rep.OK = true
	for _, h := range rep.Hosts {
		for _, c := range h.Checks {
			rep.OK = rep.OK && (c.OK || c.Skipped)
		}
	}
	for _, c := range rep.Target {
		rep.OK = rep.OK && c.OK
	}
	maskReport(rep, x.Secrets.values())
	return rep, nil
}

// checkRegistry checks that the registry accepts the file's image credentials for
// pulling, for image kinds with a registry login; ok is false when there is nothing to
// check. The item names the registry and the user, never the password.
func (x *Environments) checkRegistry(ctx context.Context, env *config.Environment) (CheckItem, bool) {
	img := x.File.Image
	if img == nil || img.Username == "" || (env.Docker == nil && env.Kubernetes == nil) {
		return CheckItem{}, false
	}
	it := CheckItem{Check: CheckRegistry}
	repo := repoOf(img)
	opts, err := registryPublisher{}.options(img, &x.Secrets)
	if err == nil {
		err = publish.CheckPull(ctx, repo, opts...)
	}
	if err != nil {
		it.Detail = fmt.Sprintf("user %q: %v", img.Username, err)
		return it, true
	}
	it.OK, it.Detail = true, fmt.Sprintf("user %q may pull %s", img.Username, repo)
	return it, true
}

func maskReport(rep *CheckReport, values [][]byte) {
	m := maskable(values)
	fix := func(items []CheckItem) {
		for i := range items {
			items[i].Detail = string(mask([]byte(items[i].Detail), m))
		}
	}
	for i := range rep.Hosts {
		fix(rep.Hosts[i].Checks)
	}
	fix(rep.Target)
}

// sshAccess is what the environment says about reaching its hosts over SSH, nil for kinds
// that do not use SSH.
func sshAccess(env *config.Environment) (*config.SSHAccess, string, string) {
	switch {
	case env.SSH != nil:
		return &env.SSH.SSHAccess, env.SSH.Path, env.SSH.Restart
	case env.Docker != nil:
		return &env.Docker.SSHAccess, "", ""
	}
	return nil, "", ""
}

func checkHost(ctx context.Context, env *config.Environment, h targets.Host) HostCheck {
	hc := HostCheck{Host: h.Name()}
	access, path, restart := sshAccess(env)
	cmdr, ok := h.(targets.Commander)
	if access == nil || !ok {
		// A Deployment: the target's preflight checks it.
		return hc
	}
	add := func(c CheckItem) { hc.Checks = append(hc.Checks, c) }
	skip := func(names ...string) {
		for _, n := range names {
			add(CheckItem{Check: n, Skipped: true, Detail: "not checked: an earlier check failed"})
		}
	}
	after := []string{CheckHostKey, CheckLogin}
	if path != "" {
		after = append(after, CheckPath, CheckDisk, CheckRestart)
	}
	// Reachable: a TCP connection to the SSH port, unless a jump host is in between (the
	// login then says it).
	if access.Jump == nil {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", h.Name())
		if err != nil {
			add(CheckItem{Check: CheckReachable, Detail: fmt.Sprintf("connecting to %s: %v", h.Name(), err)})
			skip(after...)
			return hc
		}
		conn.Close()
		add(CheckItem{Check: CheckReachable, OK: true})
	} else {
		add(CheckItem{Check: CheckReachable, Skipped: true, Detail: "through the jump host: see login"})
	}
	// Host key and login: one command that does nothing.
	if _, err := cmdr.Run(ctx, "true", nil); err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "host key") || strings.Contains(msg, "known_hosts"):
			add(CheckItem{Check: CheckHostKey, Detail: msg})
			skip(after[1:]...)
		case unreachable(err):
			add(CheckItem{Check: CheckHostKey, Skipped: true, Detail: "not checked: the host could not be reached"})
			add(CheckItem{Check: CheckLogin, Detail: msg})
			skip(after[2:]...)
		default:
			add(CheckItem{Check: CheckHostKey, OK: true})
			add(CheckItem{Check: CheckLogin, Detail: msg})
			skip(after[2:]...)
		}
		return hc
	}
	add(CheckItem{Check: CheckHostKey, OK: true})
	add(CheckItem{Check: CheckLogin, OK: true})
	if path == "" {
		return hc
	}
	q := sshconn.Quote
	// The path, or the nearest of its parents that exists, must be a directory the login
	// can write (the first deploy creates the rest).
	nearest := fmt.Sprintf(`d=%s; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; `, q(path))
	if out, err := cmdr.Run(ctx, nearest+`[ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ] || { echo "$d is not a directory the login can write"; exit 1; }`, nil); err != nil {
		add(CheckItem{Check: CheckPath, Detail: firstLine(out, err)})
	} else {
		add(CheckItem{Check: CheckPath, OK: true, Detail: path})
	}
	add(checkDisk(ctx, cmdr, nearest, path))
	add(checkRestart(ctx, cmdr, restart))
	return hc
}

// checkDisk reports the free space where releases go, failing when it is less than the
// live release takes (the worst case: a release that changes every file).
func checkDisk(ctx context.Context, cmdr targets.Commander, nearest, path string) CheckItem {
	q := sshconn.Quote
	script := nearest + `df -Pk "$d" | awk 'NR==2 {print $4}'; du -skL ` + q(path+"/current/") + ` 2>/dev/null | awk '{print $1}'`
	out, err := cmdr.Run(ctx, script, nil)
	if err != nil {
		return CheckItem{Check: CheckDisk, Detail: firstLine(out, err)}
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return CheckItem{Check: CheckDisk, Detail: "df printed nothing"}
	}
	free, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return CheckItem{Check: CheckDisk, Detail: fmt.Sprintf("reading df's output %q: %v", f[0], err)}
	}
	var live int64
	if len(f) > 1 {
		live, _ = strconv.ParseInt(f[1], 10, 64)
	}
	detail := fmt.Sprintf("%d MiB free", free/1024)
	if live > 0 {
		detail += fmt.Sprintf("; the live release takes %d MiB", max(live/1024, 1))
	}
	return CheckItem{Check: CheckDisk, OK: free > live, Detail: detail}
}

// checkRestart checks that the restart command's program is on the login's PATH.
func checkRestart(ctx context.Context, cmdr targets.Commander, restart string) CheckItem {
	prog := restartProgram(restart)
	if prog == "" {
		return CheckItem{Check: CheckRestart, Skipped: true, Detail: "no restart command"}
	}
	if out, err := cmdr.Run(ctx, "command -v "+sshconn.Quote(prog), nil); err != nil {
		return CheckItem{Check: CheckRestart, Detail: fmt.Sprintf("%q is not on the login's PATH: %s", prog, firstLine(out, err))}
	}
	return CheckItem{Check: CheckRestart, OK: true, Detail: prog}
}

// restartProgram is the program a restart command runs first: its first word after any
// VAR=value assignments.
func restartProgram(cmd string) string {
	for _, w := range strings.Fields(cmd) {
		if i := strings.IndexByte(w, '='); i > 0 && !strings.ContainsAny(w[:i], "/'\"$") {
			continue
		}
		return strings.Trim(w, `'"`)
	}
	return ""
}

func firstLine(out []byte, err error) string {
	if s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); s != "" {
		return s
	}
	return err.Error()
}

// CheckError is nil when every check passed; otherwise it names each failed check and its
// host. Every host unreachable is an unreachable target (ExitCode 7).
func CheckError(rep *CheckReport) error {
	var bad []string
	unreach := len(rep.Hosts) > 0
	for _, h := range rep.Hosts {
		hostDown := false
		for _, c := range h.Checks {
			if !c.OK && !c.Skipped {
				bad = append(bad, fmt.Sprintf("%s: %s: %s", hostNoun(h.Host), c.Check, c.Detail))
				hostDown = hostDown || c.Check == CheckReachable
			}
		}
		unreach = unreach && hostDown
	}
	for _, c := range rep.Target {
		if !c.OK {
			bad = append(bad, fmt.Sprintf("%s: %s", c.Check, c.Detail))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	err := fmt.Errorf("environment %q is not ready to deploy: %s", rep.Env, strings.Join(bad, "; "))
	if unreach {
		return &UnreachableError{Err: err}
	}
	return err
}

// RenderCheck prints a table per host, then the target's own checks.
func RenderCheck(w io.Writer, rep *CheckReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(c CheckItem) {
		res := "ok"
		switch {
		case c.Skipped:
			res = "skipped"
		case !c.OK:
			res = "FAILED"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Check, res, dash(c.Detail))
	}
	for _, h := range rep.Hosts {
		fmt.Fprintf(tw, "%s\n", hostNoun(h.Host))
		for _, c := range h.Checks {
			row(c)
		}
	}
	if len(rep.Target) > 0 {
		fmt.Fprintf(tw, "%s target %q\n", rep.Kind, rep.Env)
		for _, c := range rep.Target {
			row(c)
		}
	}
	verdict := "ready to deploy"
	if !rep.OK {
		verdict = "NOT ready to deploy"
	}
	fmt.Fprintf(tw, "%s: %s\n", rep.Env, verdict)
	return tw.Flush()
}
