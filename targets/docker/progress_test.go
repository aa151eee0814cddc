package docker

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestPullAndSendProgress: a deploy's progress lines (not a terminal: CI) say how the
// image reached each host: a pull from the registry in layers, which the record does not
// count as sent; an image tarball's missing layers sent over SSH, which it does.
func TestPullAndSendProgress(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	ref, dg := b.image("v1", nil) // pulled from the bench's registry
	var prog bytes.Buffer
	res, err := pipeline.Rollout(context.Background(), tg, b.release("20261127T000001Z", "v1", ref, dg), pipeline.WithProgress(&prog))
	if err != nil {
		t.Fatal(err)
	}
	out := prog.String()
	t.Logf("pull:\n%s", out)
	host := tg.Hosts()[0].Name()
	if !strings.Contains(out, host+": pulling the image") || !strings.Contains(out, " layer(s)") || !strings.Contains(out, host+": pulled ") {
		t.Errorf("pull progress:\n%s", out)
	}
	if s := res.Record.Hosts[0].Sent; s != nil {
		t.Errorf("a pull counted as sent: %+v", s)
	}

	base := randomLayer(t, "base.bin", 1<<20)
	r := b.tarRelease("20261127T000009Z", "v9", b.stackedHello("v9", base, randomLayer(t, "version", 64<<10)))
	prog.Reset()
	res, err = pipeline.Rollout(context.Background(), tg, r, pipeline.WithProgress(&prog))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("send:\n%s", prog.String())
	st := tg.LastSend(host)
	if !strings.Contains(prog.String(), host+": uploading ") || !strings.Contains(prog.String(), host+": uploaded ") || strings.Contains(prog.String(), "pull") {
		t.Errorf("send progress:\n%s", prog.String())
	}
	if s := res.Record.Hosts[0].Sent; s == nil || !s.Layers || s.Files != st.Sent || s.Bytes != st.LayerBytes {
		t.Errorf("the record's sent %+v; the host was sent %+v", s, st)
	}
}
