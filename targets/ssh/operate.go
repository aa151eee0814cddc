package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

var (
	_ targets.LogReader = (*Host)(nil)
	_ targets.Executor  = (*Host)(nil)
)

// NoLogsCommandError says a server environment names no logs command, so there is no way
// to know where its application logs.
type NoLogsCommandError struct{ Target string }

func (e *NoLogsCommandError) Error() string {
	return fmt.Sprintf("%s names no logs command: add one to the environment's ssh section of pushdeploy.yaml, e.g. "+
		`logs: "journalctl -u myapp --no-pager" or logs: "pm2 logs myapp --nostream --lines 200" `+
		"(it runs in the live release with PUSHDEPLOY_LOGS_SINCE and PUSHDEPLOY_LOGS_FOLLOW set)", e.Target)
}

// HasLogs says whether the target names a logs command (Logs).
func (t *Target) HasLogs() bool { return t.o.logs != "" }

// Logs runs the target's logs command (the Logs option) in path/current with the live
// release's PUSHDEPLOY_* variables, PUSHDEPLOY_PATH, PUSHDEPLOY_LOGS_SINCE (o.Since in
// whole seconds, empty when 0) and PUSHDEPLOY_LOGS_FOLLOW ("1" when o.Follow), streaming
// what it prints to w. With Follow it runs until ctx ends, and is then killed.
func (h *Host) Logs(ctx context.Context, w io.Writer, o targets.LogOptions) error {
	if h.t.o.logs == "" {
		return &NoLogsCommandError{Target: h.t.String()}
	}
	env := map[string]string{"PUSHDEPLOY_LOGS_SINCE": "", "PUSHDEPLOY_LOGS_FOLLOW": ""}
	if o.Since > 0 {
		env["PUSHDEPLOY_LOGS_SINCE"] = strconv.FormatInt(int64((o.Since+999_999_999)/1e9), 10)
	}
	if o.Follow {
		env["PUSHDEPLOY_LOGS_FOLLOW"] = "1"
	}
	return h.inLive(ctx, fmt.Sprintf(`exec "${SHELL:-/bin/sh}" -c %s`, sshconn.Quote(h.t.o.logs)), env, w, "reading the logs")
}

// Exec runs argv, word for word (quoted for the login shell), in path/current with the
// live release's PUSHDEPLOY_* variables and PUSHDEPLOY_PATH, streaming stdout and stderr
// to w. A command that exits non-zero is a *targets.ExitError.
func (h *Host) Exec(ctx context.Context, argv []string, w io.Writer) error {
	if len(argv) == 0 {
		return errors.New("no command to run")
	}
	return h.inLive(ctx, "exec "+sshconn.QuoteAll(argv...), nil, w, "running "+strconv.Quote(strings.Join(argv, " ")))
}

// inLive runs line in the live release's directory with its variables and extra, the
// values on stdin (never on a command line ps shows), and no further input.
func (h *Host) inLive(ctx context.Context, line string, extra map[string]string, w io.Writer, doing string) error {
	p, err := h.probe(ctx, "", nil)
	if err != nil {
		return fmt.Errorf("%s on %s: finding the live release: %w", doing, h.addr, err)
	}
	if p.live == "" {
		return &targets.NoLiveError{Host: h.addr, Detail: fmt.Sprintf("nothing is deployed in %s", h.path)}
	}
	rel := targets.Release{ID: p.live}
	if p.liveMeta != nil {
		rel = p.liveMeta.release()
	}
	env := rel.Vars(h.t.Kind())
	env["PUSHDEPLOY_PATH"] = h.path
	for k, v := range extra {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	q := sshconn.Quote
	var exports strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&exports, "export %s=%s\n", k, q(env[k]))
	}
	full := fmt.Sprintf(`cd %s || exit 125; eval "$(cat)"; %s </dev/null`, q(h.path+"/current"), line)
	c, err := h.client(ctx)
	if err != nil {
		return err
	}
	w = targets.SyncWriter(w)
	err = c.RunCmd(ctx, sshconn.Cmd{Line: full, Stdin: strings.NewReader(exports.String()), Stdout: w, Stderr: w})
	var ee *sshconn.ExitError
	if errors.As(err, &ee) {
		code := ee.Status
		if ee.Lost || ee.Signal != "" {
			code = -1
		}
		return &targets.ExitError{Host: h.addr, Code: code}
	}
	if err != nil {
		return fmt.Errorf("%s on %s: %w", doing, h.addr, err)
	}
	return nil
}
