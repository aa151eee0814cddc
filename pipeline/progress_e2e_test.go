package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// Upload progress and the summary's counts, through the whole flow to a real sshd host,
// with a log that is not a terminal (CI): a line when each host's upload starts and one
// when it ends (the lines every few seconds between depend on time, and are not asserted).
func TestFlowReportsUploadProgressAndWhatEachHostWasSent(t *testing.T) {
	f := newFleet(t, 1)
	file := updatedFile(t, f, "")
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index.html", "v1")
	write("app.js", "console.log(1)")
	write("style.css", "body{}")
	deploy := func(who string) (*pipeline.Record, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var log bytes.Buffer
		rec, err := pipeline.Deploy(ctx, pipeline.Request{
			File: file, Env: "test", Deployer: who, Source: pipeline.Source{Version: who},
			Secrets: f.secrets, Targets: assemble.Maker(assemble.Extra{Server: []ssh.Option{ssh.ManifestCache("")}}),
			Artifact: &pipeline.Artifact{Dir: dir}, Log: &log,
		})
		t.Logf("deploy %s:\n%s", who, log.String())
		if err != nil {
			t.Fatalf("deploy %s: %v", who, err)
		}
		return rec, log.String()
	}
	host := f.hosts[0].Addr
	check := func(rec *pipeline.Record, log string, files int, size int64) {
		t.Helper()
		if len(rec.Hosts) != 1 || rec.Hosts[0].Sent == nil {
			t.Fatalf("record hosts %+v: want one host with what it was sent", rec.Hosts)
		}
		if got := *rec.Hosts[0].Sent; got != (pipeline.Sent{Files: files, Bytes: size}) {
			t.Errorf("record says %s was sent %+v; want %d file(s), %d bytes", host, got, files, size)
		}
		for _, want := range []string{
			fmt.Sprintf("    %s: uploading %d file(s), %d B\n", host, files, size),
			fmt.Sprintf("    %s: uploaded %d file(s), %d B in ", host, files, size),
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the log has no line %q", want)
			}
		}
		var out bytes.Buffer
		pipeline.RenderRecord(&out, rec)
		if want := fmt.Sprintf("  %s: deployed (sent %d file(s), %d B)\n", host, files, size); !strings.Contains(out.String(), want) {
			t.Errorf("the summary\n%s\nhas no line %q", out.String(), want)
		}
	}
	rec, log := deploy("first")
	check(rec, log, 3, int64(len("v1")+len("console.log(1)")+len("body{}")))

	// One file changed, one added, one left alone: two go out.
	write("index.html", "v2!")
	write("new.txt", "hello")
	rec, log = deploy("second")
	check(rec, log, 2, int64(len("v2!")+len("hello")))
}
