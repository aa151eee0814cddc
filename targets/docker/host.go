package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// logLines is how many of a failed container's last log lines an error carries.
const logLines = 20

// Status reports the live container's release and every kept one.
func (h *Host) Status(ctx context.Context) (targets.Status, error) {
	st := targets.Status{Host: h.addr}
	cli, err := h.engine(ctx)
	if err != nil {
		return st, err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return st, err
	}
	for _, r := range rs {
		k := r.kept()
		// The record of activations: when its container last started (a release goes live by
		// starting its container), for rollback to the release live before the live one.
		if c, err := cli.ContainerInspect(ctx, r.container.ID); err == nil && c.State != nil {
			if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil && t.Year() > 1 {
				k.Activated = t.UnixNano()
			}
		}
		st.Kept = append(st.Kept, k)
	}
	if l := live(rs); l != nil {
		k := l.kept()
		st.Live = &k
		st.Detail = fmt.Sprintf("container %s: %s", h.containerName(l.id), l.container.Status)
		if slot := slotOf(l); slot != 0 {
			st.Detail += fmt.Sprintf(" (blue-green slot %d)", slot)
		}
	}
	running := 0
	for _, r := range rs {
		if r.running() {
			running++
		}
	}
	if running > 1 {
		st.Detail += fmt.Sprintf("; WARNING: %d containers of %s/%s run", running, h.t.app, h.t.env)
	}
	return st, nil
}

// Plan says which image would replace the live one.
func (h *Host) Plan(ctx context.Context, r targets.Release) (targets.Change, error) {
	c := targets.Change{Host: h.addr}
	if err := h.checkRelease(r); err != nil {
		return c, err
	}
	st, err := h.Status(ctx)
	if err != nil {
		return c, err
	}
	from := "(none)"
	if st.Live != nil {
		c.Live = st.Live.ID
		from = short(st.Live.Image)
		if st.Live.Digest == r.Digest {
			c.Noop = true
			c.Summary = fmt.Sprintf("image %s is live (release %s)", short(r.Image), st.Live.ID)
			return c, nil
		}
		c.Update = []string{"image"}
	} else {
		c.Add = []string{"container " + h.containerName(r.ID)}
	}
	c.Summary = fmt.Sprintf("image %s -> %s", from, short(r.Image))
	return c, nil
}

// short abbreviates the digest of a pinned reference: "repo@sha256:0123456789ab…".
func short(ref string) string {
	if i := strings.Index(ref, "@sha256:"); i >= 0 && len(ref) > i+8+12 {
		return ref[:i+8+12] + "…"
	}
	return ref
}

// checkRelease rejects a release this target cannot deploy.
func (h *Host) checkRelease(r targets.Release) error {
	if !validName.MatchString(r.ID) {
		return fmt.Errorf("release id %q: want letters, digits, '_', '.', '-'", r.ID)
	}
	if r.Image == "" {
		return fmt.Errorf("release %q has no image reference", r.ID)
	}
	if IsImageID(r.Image) {
		// Sent over SSH (or on the host already), never pulled: the ID is the content.
		if r.Digest != "" && r.Digest != r.Image {
			return fmt.Errorf("release %q: image %s is not the release's digest %s", r.ID, r.Image, r.Digest)
		}
		return nil
	}
	if r.ImageArchive != "" {
		return fmt.Errorf("release %q: an image tarball is sent as the image ID (sha256:...), not as %q", r.ID, r.Image)
	}
	ref, err := reference.ParseNormalizedNamed(r.Image)
	if err != nil {
		return fmt.Errorf("release %q: image reference %q: %w", r.ID, r.Image, err)
	}
	dg, ok := ref.(reference.Digested)
	if !ok {
		return fmt.Errorf("release %q: image %q is not pinned by digest (want repo@sha256:...): a tag can move between pull and rollback", r.ID, r.Image)
	}
	if r.Digest != "" && dg.Digest().String() != r.Digest {
		return fmt.Errorf("release %q: image %q does not carry the release's digest %s", r.ID, r.Image, r.Digest)
	}
	return nil
}

// Prepare pulls the release's image by digest and creates (without starting) its container.
func (h *Host) Prepare(ctx context.Context, r targets.Release) error {
	if err := h.checkRelease(r); err != nil {
		return err
	}
	cli, err := h.engine(ctx)
	if err != nil {
		return err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return err
	}
	name := h.containerName(r.ID)
	if have := find(rs, r.ID); have != nil {
		if have.container.Labels[LabelImage] == r.Image {
			return nil // staged already
		}
		return fmt.Errorf("preparing release %q on %s: container %q exists with another image (%s); discard it first", r.ID, h.addr, name, have.container.Labels[LabelImage])
	}
	if err := h.fetch(ctx, cli, r); err != nil {
		return err
	}
	cfg, hc, err := h.containerConfig(r, h.freeSlot(rs))
	if err != nil {
		return err
	}
	if _, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, name); err != nil {
		return fmt.Errorf("creating container %q on %s: %w", name, h.addr, err)
	}
	return nil
}

// containerConfig is the configuration of r's container; slot is its blue-green port (0 when
// not blue-green).
func (h *Host) containerConfig(r targets.Release, slot int) (*container.Config, *container.HostConfig, error) {
	o := h.t.o
	labels := map[string]string{
		LabelApp:     h.t.app,
		LabelEnv:     h.t.env,
		LabelRelease: r.ID,
		LabelVersion: r.Version,
		LabelDigest:  r.Digest,
		LabelImage:   r.Image,
	}
	if r.Deployer != "" {
		labels[LabelDeployer] = r.Deployer
	}
	if r.PipelineID != "" {
		labels[LabelPipeline] = r.PipelineID
	}
	if o.hostScope {
		labels[LabelHost] = h.addr
	}
	stop := int(math.Ceil(o.stopTimeout.Seconds()))
	env := append(append([]string(nil), o.env...), o.hostEnv[h.addr]...)
	cfg := &container.Config{
		Image:        r.Image,
		Env:          env,
		Labels:       labels,
		ExposedPorts: o.exposed,
		StopTimeout:  &stop,
	}
	hc := &container.HostConfig{
		PortBindings:  o.bindings,
		Binds:         o.volumes,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyMode(o.restart), MaximumRetryCount: o.restartMax},
		Resources:     container.Resources{Memory: o.memory, NanoCPUs: o.nanoCPUs},
		NetworkMode:   container.NetworkMode(o.network),
	}
	if slot != 0 {
		if err := h.slotConfig(cfg, hc, slot); err != nil {
			return nil, nil, err
		}
	}
	return cfg, hc, nil
}

// fetch gets r's image onto the host: sent over SSH from its tarball, or pulled.
func (h *Host) fetch(ctx context.Context, cli *client.Client, r targets.Release) error {
	switch {
	case r.ImageArchive != "":
		return h.sendImage(ctx, cli, r)
	case IsImageID(r.Image):
		if _, err := cli.ImageInspect(ctx, r.Image); err != nil {
			return fmt.Errorf("preparing release %q on %s: image %s is not there and no image tarball was given to send it (docker.registry: none): %w", r.ID, h.addr, r.Image, err)
		}
		return nil
	}
	return h.pull(ctx, cli, r.Image)
}

// pull makes the engine pull ref unless it has it: a digest-pinned image never changes.
func (h *Host) pull(ctx context.Context, cli *client.Client, ref string) error {
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	var opts image.PullOptions
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("pulling %s on %s: %w", ref, h.addr, err)
	}
	// Credentials go to their own registry only, never to the one an image reference names.
	if h.t.o.registryUser != "" && reference.Domain(named) == h.t.o.registryHost {
		auth, err := registry.EncodeAuthConfig(registry.AuthConfig{
			Username:      h.t.o.registryUser,
			Password:      h.t.o.registryPass,
			ServerAddress: reference.Domain(named),
		})
		if err != nil {
			return fmt.Errorf("pulling %s on %s: encoding credentials: %w", ref, h.addr, err)
		}
		opts.RegistryAuth = auth
	}
	rc, err := cli.ImagePull(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("pulling %s on %s: %w", ref, h.addr, err)
	}
	defer rc.Close()
	prog := newPullProgress(targets.ProgressOf(ctx), h.addr)
	err = h.readPull(rc, ref, prog)
	if err == nil {
		if _, ierr := cli.ImageInspect(ctx, ref); ierr != nil {
			err = fmt.Errorf("pulling %s on %s: the engine does not have it after the pull: %w", ref, h.addr, ierr)
		}
	}
	prog.end(err)
	return err
}

// readPull reads the engine's pull stream to its end, reporting its progress: the engine
// reports failures inside it.
func (h *Host) readPull(rc io.Reader, ref string, prog *pullProgress) error {
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			ID             string `json:"id"`
			Status         string `json:"status"`
			ProgressDetail struct {
				Current int64 `json:"current"`
				Total   int64 `json:"total"`
			} `json:"progressDetail"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("pulling %s on %s: reading the engine's progress: %w", ref, h.addr, err)
		}
		if msg := firstNonEmpty(m.ErrorDetail.Message, m.Error); msg != "" {
			return fmt.Errorf("pulling %s on %s: %s", ref, h.addr, msg)
		}
		prog.message(m.ID, m.Status, m.ProgressDetail.Current, m.ProgressDetail.Total)
	}
}

// Activate stops every running container of the app (gracefully: SIGTERM, then SIGKILL
// after the stop timeout; they are kept) and starts release id's container. An empty id
// only stops.
func (h *Host) Activate(ctx context.Context, id string) error {
	cli, err := h.engine(ctx)
	if err != nil {
		return err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return err
	}
	var want *release
	if id != "" {
		if want = find(rs, id); want == nil {
			return fmt.Errorf("activating release %q on %s: no container of it is kept there (kept: %q)", id, h.addr, ids(rs))
		}
	}
	if h.t.o.blueGreen != nil && want != nil {
		if done, err := h.switchSlots(ctx, cli, rs, want); done || err != nil {
			return err
		}
	}
	return h.stopThenStart(ctx, cli, rs, want)
}

// stopThenStart stops every running container but want's, then starts want's.
func (h *Host) stopThenStart(ctx context.Context, cli *client.Client, rs []release, want *release) error {
	id := ""
	if want != nil {
		id = want.id
	}
	secs := int(math.Ceil(h.t.o.stopTimeout.Seconds()))
	for _, r := range rs {
		if r.id == id || !r.running() {
			continue
		}
		if err := cli.ContainerStop(ctx, r.container.ID, container.StopOptions{Timeout: &secs}); err != nil {
			return fmt.Errorf("stopping container %q of release %q on %s: %w", h.containerName(r.id), r.id, h.addr, err)
		}
	}
	if want == nil || want.running() {
		return nil
	}
	if err := cli.ContainerStart(ctx, want.container.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting container %q of release %q on %s: %w", h.containerName(id), id, h.addr, err)
	}
	return nil
}

// Discard removes release id's container, which must not be running, and its image when no
// other container uses it. A release that is not there is no error.
func (h *Host) Discard(ctx context.Context, id string) error {
	cli, err := h.engine(ctx)
	if err != nil {
		return err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return err
	}
	r := find(rs, id)
	if r == nil {
		return nil
	}
	if r.running() {
		return fmt.Errorf("discarding release %q on %s: its container %q is running (activate another release first)", id, h.addr, h.containerName(id))
	}
	if err := cli.ContainerRemove(ctx, r.container.ID, container.RemoveOptions{RemoveVolumes: true}); err != nil {
		return fmt.Errorf("removing container %q of release %q on %s: %w", h.containerName(id), id, h.addr, err)
	}
	inUse := false
	for _, o := range rs {
		if o.id != id && o.container.ImageID == r.container.ImageID {
			inUse = true
		}
	}
	if !inUse {
		// Best effort: another application's container may use the image; the engine then
		// refuses, and the image stays.
		_, _ = cli.ImageRemove(ctx, r.container.ImageID, image.RemoveOptions{PruneChildren: true})
	}
	return nil
}

// CheckHealth waits for the verdict of the HEALTHCHECK of release id's container, watching
// the engine's events. Without a HEALTHCHECK it only checks that the container runs; the
// pipeline's configured check says the rest. A container that exits is a failure with its
// exit status and last log lines.
func (h *Host) CheckHealth(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, h.t.o.healthWait)
	defer cancel()
	cli, r, err := h.kept(ctx, id, "checking")
	if err != nil {
		return err
	}
	_, err = h.waitHealthy(ctx, cli, r)
	return err
}

// kept is the engine and release id's container, which must be kept on the host; doing
// names the operation in the error when it is not.
func (h *Host) kept(ctx context.Context, id, doing string) (*client.Client, *release, error) {
	cli, err := h.engine(ctx)
	if err != nil {
		return nil, nil, err
	}
	rs, err := h.releases(ctx, cli)
	if err != nil {
		return nil, nil, err
	}
	r := find(rs, id)
	if r == nil {
		return nil, nil, fmt.Errorf("%s release %q on %s: no container of it is kept there", doing, id, h.addr)
	}
	return cli, r, nil
}

// Steady watches release id's container for d, through the engine's events: it must keep
// running, the same start (not restarted by its restart policy, not exited). A container
// that dies within d fails at once, with its exit status and last log lines.
func (h *Host) Steady(ctx context.Context, id string, d time.Duration) error {
	cli, r, err := h.kept(ctx, id, "watching")
	if err != nil {
		return err
	}
	cid, name := r.container.ID, h.containerName(id)
	c, err := cli.ContainerInspect(ctx, cid)
	if err != nil {
		return fmt.Errorf("inspecting container %q on %s: %w", name, h.addr, err)
	}
	if c.State == nil || !c.State.Running || c.State.Restarting {
		code := 0
		if c.State != nil {
			code = c.State.ExitCode
		}
		return h.exited(ctx, cli, name, code)
	}
	startedAt, restarts := c.State.StartedAt, c.RestartCount
	started, _ := time.Parse(time.RFC3339Nano, startedAt)
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// From its start on: a death between the inspection and the subscription is replayed.
	msgs, errs := cli.Events(wctx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", started.Unix(), started.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", cid)),
	})
watch:
	for {
		select {
		case <-wctx.Done():
			break watch
		case err := <-errs:
			if wctx.Err() != nil && ctx.Err() == nil {
				break watch
			}
			return fmt.Errorf("watching container %q on %s: %w", name, h.addr, err)
		case m := <-msgs:
			if m.TimeNano < started.UnixNano() {
				continue
			}
			switch m.Action {
			case events.ActionDie, events.ActionOOM, events.ActionRestart, events.ActionStop, events.ActionKill:
				code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
				return fmt.Errorf("container %q on %s did not keep running (%s): %w", name, h.addr, m.Action, h.exited(ctx, cli, name, code))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("watching container %q on %s: %w", name, h.addr, err)
	}
	// The inspection at the end is the truth: the same start, still running.
	c, err = cli.ContainerInspect(ctx, cid)
	if err != nil {
		return fmt.Errorf("inspecting container %q on %s: %w", name, h.addr, err)
	}
	switch {
	case c.State == nil || !c.State.Running || c.State.Restarting:
		code := 0
		if c.State != nil {
			code = c.State.ExitCode
		}
		return h.exited(ctx, cli, name, code)
	case c.State.StartedAt != startedAt || c.RestartCount != restarts:
		return fmt.Errorf("container %q on %s restarted (%d restarts, started again at %s); last log lines:\n%s", name, h.addr, c.RestartCount, c.State.StartedAt, h.logTail(ctx, cli, name))
	}
	return nil
}

// waitHealthy waits for the verdict of r's HEALTHCHECK; hasCheck says whether it has one
// (without one, the verdict is that the container runs).
func (h *Host) waitHealthy(ctx context.Context, cli *client.Client, r *release) (hasCheck bool, err error) {
	cid, name := r.container.ID, h.containerName(r.id)
	inspect := func() (container.InspectResponse, error) {
		c, err := cli.ContainerInspect(ctx, cid)
		if err != nil {
			return c, fmt.Errorf("inspecting container %q on %s: %w", name, h.addr, err)
		}
		return c, nil
	}
	c, err := inspect()
	if err != nil {
		return false, err
	}
	hasCheck = c.Config != nil && c.Config.Healthcheck != nil && len(c.Config.Healthcheck.Test) > 0 && c.Config.Healthcheck.Test[0] != "NONE"
	if v, done := h.verdict(ctx, cli, name, c, hasCheck); done {
		return hasCheck, v
	}
	// Replay the events since the container started, so none between the inspection and
	// the subscription is missed; the inspection after each is the truth.
	started, _ := time.Parse(time.RFC3339Nano, c.State.StartedAt)
	msgs, errs := cli.Events(ctx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", started.Unix(), started.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", cid)),
	})
	for {
		select {
		case <-ctx.Done():
			status := "starting"
			if c.State.Health != nil {
				status = string(c.State.Health.Status)
			}
			return hasCheck, fmt.Errorf("waiting for container %q on %s to be healthy (it is %s): %w", name, h.addr, status, ctx.Err())
		case err := <-errs:
			return hasCheck, fmt.Errorf("watching container %q on %s: %w", name, h.addr, err)
		case m := <-msgs:
			if m.TimeNano < started.UnixNano() {
				continue
			}
			switch {
			case m.Action == events.ActionDie:
				code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
				return hasCheck, h.exited(ctx, cli, name, code)
			case strings.HasPrefix(string(m.Action), string(events.ActionHealthStatus)):
				if c, err = inspect(); err != nil {
					return hasCheck, err
				}
				if v, done := h.verdict(ctx, cli, name, c, hasCheck); done {
					return hasCheck, v
				}
			}
		}
	}
}

// verdict reads an inspection: done is false while the health check has not decided.
func (h *Host) verdict(ctx context.Context, cli *client.Client, name string, c container.InspectResponse, hasCheck bool) (err error, done bool) {
	s := c.State
	if s == nil {
		return fmt.Errorf("container %q on %s has no state", name, h.addr), true
	}
	if !s.Running || s.Restarting {
		if s.Status == container.StateCreated {
			return fmt.Errorf("container %q on %s was never started", name, h.addr), true
		}
		return h.exited(ctx, cli, name, s.ExitCode), true
	}
	if !hasCheck {
		return nil, true
	}
	if s.Health == nil {
		return nil, false
	}
	switch s.Health.Status {
	case container.Healthy:
		return nil, true
	case container.Unhealthy:
		probe := ""
		if n := len(s.Health.Log); n > 0 {
			last := s.Health.Log[n-1]
			probe = fmt.Sprintf(" (last check: exit %d: %s)", last.ExitCode, strings.TrimSpace(last.Output))
		}
		return fmt.Errorf("container %q on %s is unhealthy: its HEALTHCHECK failed %d times%s; last log lines:\n%s",
			name, h.addr, s.Health.FailingStreak, probe, h.logTail(ctx, cli, name)), true
	}
	return nil, false
}

func (h *Host) exited(ctx context.Context, cli *client.Client, name string, code int) error {
	return fmt.Errorf("container %q on %s exited with status %d; last log lines:\n%s", name, h.addr, code, h.logTail(ctx, cli, name))
}

// logTail returns the container's last log lines, or why they cannot be read.
func (h *Host) logTail(ctx context.Context, cli *client.Client, name string) string {
	rc, err := cli.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(logLines)})
	if err != nil {
		return fmt.Sprintf("(reading the logs: %v)", err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := stdcopy.StdCopy(&b, &b, io.LimitReader(rc, 64<<10)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("%s(reading the logs: %v)", b.String(), err)
	}
	s := strings.TrimRight(b.String(), "\n")
	if s == "" {
		return "(none)"
	}
	return s
}

// Run runs cmd on the host over SSH, with env added to its environment.
func (h *Host) Run(ctx context.Context, cmd string, env map[string]string) ([]byte, error) {
	sc, err := h.sshClient(ctx)
	if err != nil {
		return nil, err
	}
	words := []string{"env"}
	for k, v := range env {
		words = append(words, k+"="+v)
	}
	line := sshconn.QuoteAll(append(words, "sh", "-c", cmd)...)
	stdout, stderr, err := sc.Run(ctx, line)
	return append(stdout, stderr...), err
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
