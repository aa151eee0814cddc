package ssh

import (
	"os"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
)

func TestZZDump(t *testing.T) {
	src := os.Getenv("ZZ_SRC")
	if src == "" {
		t.Skip()
	}
	m, err := BuildManifest(src)
	if err != nil {
		t.Fatal(err)
	}
	d := diffManifests(nil, m)
	f, _ := os.Create(os.Getenv("ZZ_OUT"))
	defer f.Close()
	h := &Host{}
	prog := newUploadProgress(nopProgress{}, "x", d.send)
	if err := h.writeTar(f, tarHost{zstd: os.Getenv("ZZ_ZSTD") != "", b2sum: true}, src, d.send, tarBatches(d.send), prog); err != nil {
		t.Fatal(err)
	}
}

type nopProgress struct{}

func (nopProgress) Upload(string, targets.Transfer) {}
