package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/targets"
)

// LabelHook marks the one-off container a hooks.updated command runs in, which is not a
// release (it has no LabelRelease).
const LabelHook = "io.pushdeploy.hook"

var _ targets.Updater = (*Host)(nil)

// Updates says whether hooks.updated has commands for the new release's image.
func (h *Host) Updates() bool { return len(h.t.o.updated) > 0 }

// Update runs the Updated commands, in order, each in a one-off container of the staged
// release's image (`docker run --rm IMAGE sh -c CMD`, as Kamal's `app exec` runs one): the
// release's environment, volumes and network, with r's PUSHDEPLOY_* variables, but no
// published port, restart policy or health check, so it runs beside the live container.
// Migrations are what it is for: they run in the code that needs them, before the switch.
// Each is bounded by UpdatedTimeout and killed when it runs longer; the first that fails
// stops the deploy, saying what it printed, and nothing went live.
func (h *Host) Update(ctx context.Context, r targets.Release) error {
	cli, rel, err := h.kept(ctx, r.ID, "running hooks.updated in")
	if err != nil {
		return err
	}
	if rel.running() {
		return fmt.Errorf("running hooks.updated in release %q on %s: it is live already, not a staged release", r.ID, h.addr)
	}
	cfg, hc, err := h.containerConfig(r, 0)
	if err != nil {
		return err
	}
	vars := r.Vars(h.t.Kind())
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		cfg.Env = append(cfg.Env, k+"="+vars[k])
	}
	cfg.Labels = map[string]string{LabelApp: h.t.app, LabelEnv: h.t.env, LabelHook: "updated"}
	cfg.ExposedPorts, hc.PortBindings = nil, nil
	cfg.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	cfg.Entrypoint = []string{"/bin/sh", "-c"}
	hc.RestartPolicy = container.RestartPolicy{}
	name := h.containerName(r.ID) + "-updated"
	for _, cmd := range h.t.o.updated {
		cfg.Cmd = []string{cmd}
		if err := h.runOnce(ctx, cli, name, cfg, hc); err != nil {
			return fmt.Errorf("running %q in a container of release %q (%s) on %s: %w", cmd, r.ID, short(r.Image), h.addr, err)
		}
	}
	return nil
}

// runOnce creates, starts and waits for one container, and removes it, whatever happened;
// one left by a deploy killed half-way is removed first. A command that does not exit 0 is
// an error with its last output.
func (h *Host) runOnce(ctx context.Context, cli *client.Client, name string, cfg *container.Config, hc *container.HostConfig) error {
	rm := func() {
		// A fresh context: the caller's may be the one that ran out.
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = cli.ContainerRemove(c, name, container.RemoveOptions{Force: true})
	}
	rm()
	if _, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, name); err != nil {
		return fmt.Errorf("creating container %q: %w", name, err)
	}
	defer rm()
	if err := cli.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting container %q: %w", name, err)
	}
	// The command's time counts from its start; the removal kills it when it ran out.
	cctx, cancel := context.WithTimeout(ctx, h.t.o.updatedWait)
	defer cancel()
	waitC, errC := cli.ContainerWait(cctx, name, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitC:
		if w.Error != nil {
			return fmt.Errorf("waiting for container %q: %s", name, w.Error.Message)
		}
		code = w.StatusCode
	case err := <-errC:
		if cctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("timed out after %s and was killed; last output:\n%s", h.t.o.updatedWait, h.logTail(context.WithoutCancel(ctx), cli, name))
		}
		return fmt.Errorf("waiting for container %q: %w", name, err)
	}
	if code != 0 {
		return fmt.Errorf("exit status %d; last output:\n%s", code, h.logTail(context.WithoutCancel(ctx), cli, name))
	}
	return nil
}
