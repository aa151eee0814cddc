package docker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
)

// clientLoop GETs url until stopped and counts what fails: a client of the proxy during a
// deploy.
type clientLoop struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	ok, fail int
	failures []string
	bodies   map[string]int
}

func startClient(url string) *clientLoop {
	c := &clientLoop{stop: make(chan struct{}), done: make(chan struct{}), bodies: map[string]int{}}
	go func() {
		defer close(c.done)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for n := 0; n < 100000; n++ {
			got := healthWith(hc, url)
			c.mu.Lock()
			if strings.HasPrefix(got, "200 ") {
				c.ok++
				c.bodies[got]++
			} else {
				c.fail++
				if len(c.failures) < 5 {
					c.failures = append(c.failures, got)
				}
			}
			c.mu.Unlock()
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

func (c *clientLoop) finish() (ok, fail int, failures []string, bodies map[string]int) {
	close(c.stop)
	<-c.done
	return c.ok, c.fail, c.failures, c.bodies
}

func healthWith(hc *http.Client, url string) string {
	resp, err := hc.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(b.String()))
}

func TestBlueGreenBehindNginxServesEveryRequest(t *testing.T) {
	b := newBench(t)
	slots := [2]int{b.port, freePort(t)}
	// The live slot is the server, the other the backup (see BlueGreen).
	server := `printf 'server 127.0.0.1:%s max_fails=0;\nserver 127.0.0.1:%s backup max_fails=0;\n'`
	proxy := testbench.StartNginx(t, fmt.Sprintf("server 127.0.0.1:%d max_fails=0;", slots[0]), fmt.Sprintf("server 127.0.0.1:%d backup max_fails=0;", slots[1]))
	url := "http://" + proxy.Addr + "/health"
	tg := b.target(WithBlueGreen(BlueGreen{
		Ports:  slots,
		Env:    []string{"HELLO_ADDR=127.0.0.1:{{.Port}}"},
		Switch: fmt.Sprintf(server, "{{.Port}}", "{{.Other}}") + " > " + proxy.Upstream + " && " + proxy.Reload(),
	}))
	image := func(v string, mod func(*testbench.HelloImage)) targets.Release {
		ref, dg := b.image(v, func(s *testbench.HelloImage) {
			s.CheckEnvAddr = true
			if mod != nil {
				mod(s)
			}
		})
		return b.release("20261127T00000"+v[1:]+"Z", v, ref, dg)
	}
	// expect asserts the one running release, its slot, and what the proxy answers.
	expect := func(r targets.Release, slot int) {
		t.Helper()
		b.port = slot
		b.expect(b.name(r.ID), "200 ok "+r.Version)
		st, err := tg.Hosts()[0].Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Live == nil || st.Live.ID != r.ID || !strings.Contains(st.Detail, fmt.Sprintf("slot %d", slot)) {
			t.Errorf("status = %+v, want %s live on slot %d", st, r.ID, slot)
		}
		if got := healthAt(proxy.Addr); got != "200 ok "+r.Version {
			t.Errorf("proxy answers %q, want 200 ok %s", got, r.Version)
		}
	}
	// during runs fn with a client polling the proxy and asserts no request failed.
	during := func(what string, fn func()) {
		t.Helper()
		c := startClient(url)
		fn()
		ok, fail, failures, bodies := c.finish()
		t.Logf("%s: %d requests served %v, %d failed", what, ok, bodies, fail)
		if fail > 0 {
			t.Errorf("%s: %d requests failed through the proxy, e.g. %q", what, fail, failures)
		}
	}

	r1 := image("v1", nil)
	if err := b.rollout(tg, r1); err != nil {
		t.Fatal(err)
	}
	expect(r1, slots[0])

	r2 := image("v2", nil)
	during("upgrade", func() {
		if err := b.rollout(tg, r2); err != nil {
			t.Fatal(err)
		}
	})
	expect(r2, slots[1])

	// A release that never gets healthy never takes a request: the proxy is not switched,
	// and v2 never stops.
	r3 := image("v3", func(s *testbench.HelloImage) { s.FailHealth = true })
	during("failed upgrade", func() {
		failedAt(t, b.rollout(tg, r3), pipeline.StepActivate, "is unhealthy")
	})
	expect(r2, slots[1])
	if got := b.kept(tg); !equal(got, []string{r1.ID, r2.ID}) {
		t.Errorf("kept = %q, want v1 and v2", got)
	}

	// Back to the previous release, on the other slot: no downtime either.
	during("rollback", func() {
		if _, err := pipeline.Rollback(context.Background(), tg, r1.ID); err != nil {
			t.Fatal(err)
		}
	})
	expect(r1, slots[0])

	// Back past the previous release: v2 kept its slot, which v4 holds now. The target
	// stops v4 before it starts v2 (a moment of downtime, as without blue-green).
	r4 := image("v4", nil)
	if err := b.rollout(tg, r4); err != nil {
		t.Fatal(err)
	}
	expect(r4, slots[1])
	if _, err := pipeline.Rollback(context.Background(), tg, r2.ID); err != nil {
		t.Fatal(err)
	}
	expect(r2, slots[1])
}
