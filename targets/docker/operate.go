package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pushdeploy/pushdeploy/targets"
)

var (
	_ targets.LogReader = (*Host)(nil)
	_ targets.Executor  = (*Host)(nil)
)

// liveContainer is the host's live release's container, or a *targets.NoLiveError.
func (h *Host) liveContainer(ctx context.Context) (*client.Client, *release, error) {
	cli, err := h.engine(ctx)
	if err != nil {
		return nil, nil, err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return nil, nil, err
	}
	l := live(rs)
	if l == nil {
		detail := fmt.Sprintf("no container of %s/%s runs", h.t.app, h.t.env)
		if len(rs) > 0 {
			detail += fmt.Sprintf(" (%d kept, stopped)", len(rs))
		}
		return nil, nil, &targets.NoLiveError{Host: h.addr, Detail: detail}
	}
	return cli, l, nil
}

// Logs streams the live container's logs (docker logs), stdout and stderr, to w; o.Since
// is counted back from this machine's clock, as docker logs --since does.
func (h *Host) Logs(ctx context.Context, w io.Writer, o targets.LogOptions) error {
	cli, l, err := h.liveContainer(ctx)
	if err != nil {
		return err
	}
	name := h.containerName(l.id)
	c, err := cli.ContainerInspect(ctx, l.container.ID)
	if err != nil {
		return fmt.Errorf("reading the logs of container %q on %s: %w", name, h.addr, err)
	}
	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: o.Follow}
	if o.Since > 0 {
		lo.Since = strconv.FormatInt(time.Now().Add(-o.Since).Unix(), 10)
	}
	rc, err := cli.ContainerLogs(ctx, l.container.ID, lo)
	if err != nil {
		return fmt.Errorf("reading the logs of container %q on %s: %w", name, h.addr, err)
	}
	defer rc.Close()
	if c.Config != nil && c.Config.Tty {
		_, err = io.Copy(w, rc)
	} else {
		_, err = stdcopy.StdCopy(w, w, rc)
	}
	if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		return fmt.Errorf("reading the logs of container %q on %s: %w", name, h.addr, err)
	}
	return nil
}

// Exec runs argv in the live container (docker exec, no tty, no input) with the release's
// PUSHDEPLOY_* variables added, streaming stdout and stderr to w. A command that exits
// non-zero is a *targets.ExitError.
func (h *Host) Exec(ctx context.Context, argv []string, w io.Writer) error {
	if len(argv) == 0 {
		return errors.New("no command to run")
	}
	cli, l, err := h.liveContainer(ctx)
	if err != nil {
		return err
	}
	name := h.containerName(l.id)
	doing := fmt.Sprintf("running %q in container %q on %s", strings.Join(argv, " "), name, h.addr)
	lb := l.container.Labels
	rel := targets.Release{ID: l.id, App: h.t.app, Env: h.t.env, Version: lb[LabelVersion], Digest: lb[LabelDigest],
		Image: lb[LabelImage], Deployer: lb[LabelDeployer], PipelineID: lb[LabelPipeline]}
	vars := rel.Vars(h.t.Kind())
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	ex, err := cli.ContainerExecCreate(ctx, l.container.ID, container.ExecOptions{Cmd: argv, Env: env, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	done := make(chan error, 1)
	go func() { _, err := stdcopy.StdCopy(w, w, att.Reader); done <- err }()
	select {
	case err = <-done:
	case <-ctx.Done():
		att.Close()
		<-done
		return fmt.Errorf("%s: %w", doing, ctx.Err())
	}
	att.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: reading its output: %w", doing, err)
	}
	in, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return fmt.Errorf("%s: reading its exit status: %w", doing, err)
	}
	if in.Running {
		return fmt.Errorf("%s: its output ended while it still runs", doing)
	}
	if in.ExitCode != 0 {
		return &targets.ExitError{Host: h.addr, Code: in.ExitCode}
	}
	return nil
}
