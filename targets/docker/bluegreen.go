package docker

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
)

// LabelSlot is the blue-green slot (host port) of a release's container.
const LabelSlot = "io.pushdeploy.slot"

// freeSlot is the slot for a new release: the one the live container does not use. 0 when
// not blue-green.
func (h *Host) freeSlot(rs []release) int {
	bg := h.t.o.blueGreen
	if bg == nil {
		return 0
	}
	if l := live(rs); l != nil && slotOf(l) == bg.Ports[0] {
		return bg.Ports[1]
	}
	return bg.Ports[0]
}

// slotData is what templates see: {{.Port}} the slot, {{.Other}} the other one.
func (h *Host) slotData(slot int) map[string]int {
	p := h.t.o.blueGreen.Ports
	other := p[0]
	if slot == p[0] {
		other = p[1]
	}
	return map[string]int{"Port": slot, "Other": other}
}

func slotOf(r *release) int {
	n, _ := strconv.Atoi(r.container.Labels[LabelSlot])
	return n
}

// slotConfig publishes the container on slot, or hands the slot to it through the
// environment.
func (h *Host) slotConfig(cfg *container.Config, hc *container.HostConfig, slot int) error {
	o := h.t.o
	cfg.Labels[LabelSlot] = strconv.Itoa(slot)
	for _, t := range o.envTmpl {
		var b strings.Builder
		if err := t.Execute(&b, h.slotData(slot)); err != nil {
			return fmt.Errorf("blue-green environment variable %q: %w", t.Name(), err)
		}
		cfg.Env = append(cfg.Env, t.Name()+"="+b.String())
	}
	if cp := o.blueGreen.ContainerPort; cp != 0 {
		p := nat.Port(strconv.Itoa(cp) + "/tcp")
		cfg.ExposedPorts = nat.PortSet{p: {}}
		hc.PortBindings = nat.PortMap{p: {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(slot)}}}
	}
	return nil
}

// switchSlots makes want live beside the running release: start it on its slot, wait until
// it is ready, run the switch command, then stop the others. done is false when want shares
// its slot with a running container (a rollback past the previous release): the caller
// then stops before it starts.
func (h *Host) switchSlots(ctx context.Context, cli *client.Client, rs []release, want *release) (done bool, err error) {
	slot := slotOf(want)
	var others []release
	for _, r := range rs {
		if r.id == want.id || !r.running() {
			continue
		}
		if slotOf(&r) == slot {
			return false, nil
		}
		others = append(others, r)
	}
	name := h.containerName(want.id)
	if !want.running() {
		if err := cli.ContainerStart(ctx, want.container.ID, container.StartOptions{}); err != nil {
			return true, fmt.Errorf("starting container %q of release %q on %s: %w", name, want.id, h.addr, err)
		}
	}
	// Until the proxy is switched, the old release serves: a new one that never gets ready
	// is stopped and the old one never noticed anything.
	abandon := func(err error) (bool, error) {
		secs := 0
		if serr := cli.ContainerStop(context.WithoutCancel(ctx), want.container.ID, container.StopOptions{Timeout: &secs}); serr != nil {
			err = fmt.Errorf("%w (and stopping it again: %v)", err, serr)
		}
		return true, err
	}
	if err := h.waitReady(ctx, cli, want, slot); err != nil {
		return abandon(err)
	}
	if t := h.t.o.switchTmpl; t != nil {
		var b strings.Builder
		if err := t.Execute(&b, h.slotData(slot)); err != nil {
			return abandon(fmt.Errorf("blue-green switch command: %w", err))
		}
		if out, err := h.runShell(ctx, b.String()); err != nil {
			err = fmt.Errorf("switching the proxy on %s to port %d: %w: %s", h.addr, slot, err, tailString(out, 2000))
			if len(others) > 0 {
				if old := slotOf(&others[0]); old != 0 {
					var back strings.Builder
					if t.Execute(&back, h.slotData(old)) == nil {
						if _, berr := h.runShell(context.WithoutCancel(ctx), back.String()); berr != nil {
							err = fmt.Errorf("%w; switching it back to port %d failed too: %v", err, old, berr)
						}
					}
				}
			}
			return abandon(err)
		}
	}
	if d := h.t.o.blueGreen.Drain; d > 0 && len(others) > 0 {
		select {
		case <-ctx.Done():
			return true, fmt.Errorf("draining the old release on %s: %w", h.addr, ctx.Err())
		case <-time.After(d):
		}
	}
	secs := int(math.Ceil(h.t.o.stopTimeout.Seconds()))
	for _, r := range others {
		if err := cli.ContainerStop(ctx, r.container.ID, container.StopOptions{Timeout: &secs}); err != nil {
			return true, fmt.Errorf("stopping container %q of release %q on %s: %w", h.containerName(r.id), r.id, h.addr, err)
		}
	}
	return true, nil
}

// waitReady waits until r's container passes its HEALTHCHECK or, without one, accepts
// connections on its slot (dialled from the host through SSH).
func (h *Host) waitReady(ctx context.Context, cli *client.Client, r *release, slot int) error {
	ctx, cancel := context.WithTimeout(ctx, h.t.o.healthWait)
	defer cancel()
	hasCheck, err := h.waitHealthy(ctx, cli, r)
	if err != nil || hasCheck {
		return err
	}
	sc, err := h.sshClient(ctx)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(slot))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, dialErr := sc.DialTCP(ctx, addr)
		if dialErr == nil {
			c.Close()
			return nil
		}
		// Still running? A container that exited will never listen.
		if _, err := h.waitHealthy(ctx, cli, r); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for release %q on %s to accept connections on %s: %w (last: %v)", r.id, h.addr, addr, ctx.Err(), dialErr)
		case <-tick.C:
		}
	}
}

func tailString(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
