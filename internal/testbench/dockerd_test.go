package testbench

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestStartDockerd(t *testing.T) {
	d := StartDockerd(t)
	resp, err := d.HTTPClient().Get("http://docker/version")
	if err != nil {
		t.Fatalf("engine version: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ApiVersion"`) {
		t.Fatalf("engine version: %d %s", resp.StatusCode, b)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket %s still there after Stop: %v", d.Socket, err)
	}
	// Stop is idempotent: the cleanup calls it again.
}
