package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// HostOutput is what logs or exec did on one host.
type HostOutput struct {
	Host string `json:"host"`
	OK   bool   `json:"ok"`
	// ExitCode is the command's exit status (exec), when it ran to an end.
	ExitCode *int `json:"exitCode,omitempty"`
	// Output is what the host printed, when the output was captured (no writer given).
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
	// Unreachable says the host could not be reached at all.
	Unreachable bool `json:"unreachable,omitempty"`
}

// OutputReport is the result of logs or exec on an environment's hosts.
type OutputReport struct {
	Env  string `json:"env"`
	Kind string `json:"kind"`
	// Command is what exec ran.
	Command []string     `json:"command,omitempty"`
	Hosts   []HostOutput `json:"hosts"`
	OK      bool         `json:"ok"`
}

// RemoteError is logs or exec failing on some hosts: it names each and why. errors.As
// finds each host's own error through it (a *targets.ExitError, a *targets.NoLiveError,
// a failure to reach the host, which makes ExitCode 7).
type RemoteError struct {
	Op     string // "logs" or "exec"
	Env    string
	Failed []HostOutput
	errs   []error
}

func (e *RemoteError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, h := range e.Failed {
		parts[i] = h.Error
	}
	return fmt.Sprintf("%s in environment %q failed on %d host(s): %s", e.Op, e.Env, len(e.Failed), strings.Join(parts, "; "))
}

func (e *RemoteError) Unwrap() []error { return e.errs }

// LogsOption configures Environments.Logs.
type LogsOption func(*logsOptions)

type logsOptions struct {
	host   string
	since  time.Duration
	follow bool
}

// LogsHost reads the logs of one host only (its name as status shows it: "10.0.0.5:22" or
// "10.0.0.5", "deployment/web" or "web"). Default: every host.
func LogsHost(name string) LogsOption { return func(o *logsOptions) { o.host = name } }

// LogsSince keeps what was logged within d. Default: 0, everything the host keeps (a
// server's logs command prints what it prints by default).
func LogsSince(d time.Duration) LogsOption { return func(o *logsOptions) { o.since = d } }

// LogsFollow keeps streaming new lines until ctx ends, which is then no error. Default:
// false.
func LogsFollow(follow bool) LogsOption { return func(o *logsOptions) { o.follow = follow } }

// Logs writes the live release's logs of the named environment's hosts to w, every line
// prefixed by its host ("web1:22 | ..."), the hosts side by side: `docker logs` of the live
// container on Docker hosts, the pods of each Deployment (a line also names its pod, as
// kubectl logs --prefix does), and on servers the logs command the environment names
// (ssh.logs, run in the live release with PUSHDEPLOY_LOGS_SINCE and
// PUSHDEPLOY_LOGS_FOLLOW). With w nil nothing is streamed and each host's output is in the
// report (Follow is then refused). A host that fails (unreachable, nothing live) does not
// stop the others; the error is then a *RemoteError naming each.
func (x *Environments) Logs(ctx context.Context, name string, w io.Writer, opts ...LogsOption) (*OutputReport, error) {
	var o logsOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.since < 0 {
		return nil, &UsageError{Err: fmt.Errorf("logs --since %s: must not be negative", o.since)}
	}
	if w == nil && o.follow {
		return nil, &UsageError{Err: errors.New("logs --follow streams: it cannot be combined with JSON output")}
	}
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	if lc, ok := e.t.(interface{ HasLogs() bool }); ok && !lc.HasLogs() {
		return nil, fmt.Errorf("environment %q names no logs command: add one to its ssh section of pushdeploy.yaml, "+
			`e.g. logs: "journalctl -u %s --no-pager" or logs: "pm2 logs %s --nostream --lines 200" `+
			"(it runs in the live release; PUSHDEPLOY_LOGS_SINCE is --since in seconds and PUSHDEPLOY_LOGS_FOLLOW is 1 with --follow)",
			name, x.File.App, x.File.App)
	}
	lo := targets.LogOptions{Since: o.since, Follow: o.follow}
	return x.onHosts(ctx, "logs", name, e.t, o.host, w, nil, func(ctx context.Context, h targets.Host, hw io.Writer) error {
		lr, ok := h.(targets.LogReader)
		if !ok {
			return fmt.Errorf("the %s target does not read logs", e.t.Kind())
		}
		err := lr.Logs(ctx, hw, lo)
		if o.follow && ctx.Err() != nil {
			return nil // the caller stopped following
		}
		return err
	})
}

// ExecOption configures Environments.Exec.
type ExecOption func(*execOptions)

type execOptions struct{ host string }

// ExecHost runs the command on one host only (named as for LogsHost). Default: every host.
func ExecHost(name string) ExecOption { return func(o *execOptions) { o.host = name } }

// ShellCommand is the argv that runs line with sh -c in every kind of target (the module's
// exec --cmd "...").
func ShellCommand(line string) []string { return []string{"sh", "-c", line} }

// Exec runs argv in the live release on each of the named environment's hosts, side by
// side, and writes what it prints to w, every line prefixed by its host: on servers in
// <path>/current with the live release's PUSHDEPLOY_* variables and PUSHDEPLOY_PATH, the
// words quoted for the login shell; in the live container on Docker hosts (docker exec,
// with the PUSHDEPLOY_* variables); in one running pod of each Deployment (kubectl exec).
// argv is run word for word everywhere: ShellCommand makes a shell line of one. With w
// nil each host's output is in the report instead. The error is a *RemoteError when the
// command failed, or could not run, on any host.
func (x *Environments) Exec(ctx context.Context, name string, argv []string, w io.Writer, opts ...ExecOption) (*OutputReport, error) {
	var o execOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(argv) == 0 || strings.TrimSpace(strings.Join(argv, "")) == "" {
		return nil, &UsageError{Err: errors.New("exec: no command given (pushdeploy exec --env NAME -- CMD [ARG...])")}
	}
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	return x.onHosts(ctx, "exec", name, e.t, o.host, w, argv, func(ctx context.Context, h targets.Host, hw io.Writer) error {
		ex, ok := h.(targets.Executor)
		if !ok {
			return fmt.Errorf("the %s target does not run commands", e.t.Kind())
		}
		return ex.Exec(ctx, argv, hw)
	})
}

// pickHosts is the target's hosts, or the one named only: by its name, or by its name
// without the port ("10.0.0.5" for "10.0.0.5:22") or kind ("web" for "deployment/web")
// when that is not ambiguous.
func pickHosts(env string, t targets.Target, only string) ([]targets.Host, error) {
	hosts := t.Hosts()
	if only == "" {
		return hosts, nil
	}
	var exact, loose []targets.Host
	var names []string
	for _, h := range hosts {
		n := h.Name()
		names = append(names, n)
		switch {
		case n == only:
			exact = append(exact, h)
		case strings.TrimPrefix(n, "deployment/") == only, strings.HasPrefix(n, only+":"):
			loose = append(loose, h)
		}
	}
	switch {
	case len(exact) > 0:
		return exact[:1], nil
	case len(loose) == 1:
		return loose, nil
	case len(loose) > 1:
		return nil, &UsageError{Err: fmt.Errorf("environment %q: --host %q matches %d hosts: give the port too (it has: %s)", env, only, len(loose), strings.Join(names, ", "))}
	}
	return nil, &UsageError{Err: fmt.Errorf("environment %q has no host %q (it has: %s)", env, only, strings.Join(names, ", "))}
}

// onHosts runs do on the chosen hosts side by side, each host's output prefixed by its
// name and masked on its way to w (or captured, w nil), and reports every host.
func (x *Environments) onHosts(ctx context.Context, op, env string, t targets.Target, only string, w io.Writer,
	argv []string, do func(context.Context, targets.Host, io.Writer) error) (*OutputReport, error) {
	hosts, err := pickHosts(env, t, only)
	if err != nil {
		return nil, err
	}
	rep := &OutputReport{Env: env, Kind: t.Kind(), Command: argv, Hosts: make([]HostOutput, len(hosts))}
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name()))
	}
	secrets := x.Secrets.values()
	var mu sync.Mutex
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var captured bytes.Buffer
			var lw *targets.LineWriter
			if w != nil {
				lw = targets.NewLineWriter(newMasker(w, secrets), &mu, fmt.Sprintf("%-*s | ", width, h.Name()))
			} else {
				lw = targets.NewLineWriter(&captured, &mu, "")
			}
			err := do(ctx, h, lw)
			lw.Close()
			ho := HostOutput{Host: h.Name(), OK: err == nil}
			if w == nil {
				ho.Output = string(mask(captured.Bytes(), maskable(secrets)))
			}
			var ee *targets.ExitError
			switch {
			case err == nil:
				if op == "exec" {
					ho.ExitCode = new(int)
				}
			case errors.As(err, &ee):
				if ee.Code >= 0 {
					ho.ExitCode = &ee.Code
				}
			case unreachable(err):
				ho.Unreachable = true
			}
			if err != nil {
				err = maskError(err, secrets)
				ho.Error = err.Error()
				errs[i] = err
			}
			rep.Hosts[i] = ho
		}()
	}
	wg.Wait()
	rep.OK = true
	var fail *RemoteError
	for i, h := range rep.Hosts {
		if !h.OK {
			rep.OK = false
			if fail == nil {
				fail = &RemoteError{Op: op, Env: env}
			}
			fail.Failed = append(fail.Failed, h)
			fail.errs = append(fail.errs, errs[i])
		}
	}
	if fail != nil {
		return rep, fail
	}
	return rep, nil
}

// RenderOutputSummary prints one line per host: ok, the command's exit status, or why it
// failed.
func RenderOutputSummary(w io.Writer, rep *OutputReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, h := range rep.Hosts {
		res := "ok"
		switch {
		case h.Unreachable:
			res = "UNREACHABLE"
		case h.ExitCode != nil && *h.ExitCode != 0:
			res = fmt.Sprintf("exit %d", *h.ExitCode)
		case !h.OK:
			res = "FAILED"
		case h.ExitCode != nil:
			res = "exit 0"
		}
		detail := "-"
		if !h.OK && (h.ExitCode == nil || *h.ExitCode == 0) {
			detail = h.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Host, res, detail)
	}
	return tw.Flush()
}
