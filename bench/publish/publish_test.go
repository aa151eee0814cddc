// Package publishbench measures a re-publish with one changed layer out of ten: bytes
// uploaded (counted by a recording proxy in front of a real distribution registry) and wall
// time, for pipeline/publish and for `crane push` of the same docker-archive tarball.
//
//	go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
//	go test ./bench/publish -run '^$' -bench . -benchtime 10x
package publishbench

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

const (
	layerCount = 10
	layerSize  = 4 << 20 // bytes of random content per layer
	changed    = 4       // index of the layer that changes
)

func crane(b *testing.B) string {
	if p, err := exec.LookPath("crane"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(string(trimNL(gopath)), "bin", "crane")
	if _, err := os.Stat(p); err != nil {
		testbench.Unavailable(b, "crane not installed (go install github.com/google/go-containerregistry/cmd/crane@v0.22.1)")
	}
	return p
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func imageOf(b *testing.B, layers []v1.Layer) v1.Image {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// variant writes the base image with a fresh layer at index changed as a docker-archive and
// returns its path and the bytes that must go up: the new layer, the new config and the
// manifest once.
func variant(b *testing.B, dir string, base []v1.Layer, i int) (string, int64) {
	l, err := random.Layer(layerSize, types.OCILayer)
	if err != nil {
		b.Fatal(err)
	}
	layers := append([]v1.Layer(nil), base...)
	layers[changed] = l
	img := imageOf(b, layers)
	path := filepath.Join(dir, fmt.Sprintf("v%d.tar", i))
	tag, _ := name.NewTag("bench.local/app:v")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		b.Fatal(err)
	}
	size, _ := l.Size()
	// The manifest as both tools send it: the one the docker-archive yields.
	opened, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg, _ := opened.RawConfigFile()
	m, _ := opened.RawManifest()
	return path, size + int64(len(cfg)) + int64(len(m))
}

// builds numbers the fake commits of the 4-tag run, across the benchmark's repeated calls.
var builds int

func BenchmarkRepublishOneChangedLayer(b *testing.B) {
	craneBin := crane(b)
	reg := testbench.DistributionRegistry(b)
	proxy := testbench.NewRegistryProxy(b, reg)
	dir := b.TempDir()
	dockerConfig := filepath.Join(dir, "docker")
	os.MkdirAll(dockerConfig, 0o700)
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, proxy.Host, basic(reg.User, reg.Password))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	auth := publish.WithBasicAuth(reg.User, reg.Password)

	var base []v1.Layer
	for i := 0; i < layerCount; i++ {
		l, err := random.Layer(layerSize, types.OCILayer)
		if err != nil {
			b.Fatal(err)
		}
		base = append(base, l)
	}
	baseImg := imageOf(b, base)
	for _, repo := range []string{"pushdeploy", "pushdeploy4", "crane"} {
		if _, err := publish.Publish(context.Background(), baseImg, proxy.Repo(repo), []string{"main"}, auth); err != nil {
			b.Fatal(err)
		}
	}

	type contender struct {
		name string
		push func(path string) error
		ns   time.Duration
		sent int64
	}
	contenders := []*contender{
		{name: "pushdeploy", push: func(path string) error {
			_, err := publish.PublishPath(context.Background(), path, proxy.Repo("pushdeploy"), []string{"main"}, auth)
			return err
		}},
		{name: "pushdeploy-4-tags", push: func(path string) error {
			builds++
			sha := fmt.Sprintf("%x", sha1.Sum([]byte(fmt.Sprint(builds))))
			tags := publish.Tags(publish.SourceMeta{Commit: sha, Branch: "main"}, true)
			_, err := publish.PublishPath(context.Background(), path, proxy.Repo("pushdeploy4"), tags, auth)
			return err
		}},
		{name: "crane", push: func(path string) error {
			cmd := exec.Command(craneBin, "push", path, proxy.Repo("crane")+":main")
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("crane push: %v: %s", err, out)
			}
			return nil
		}},
	}
	// Each iteration pushes the same new variant with every contender, in a rotating order,
	// so that the load of a shared machine hits them alike.
	var needed int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path, need := variant(b, dir, base, i)
		needed += need
		for k := range contenders {
			c := contenders[(i+k)%len(contenders)]
			proxy.Take()
			start := time.Now()
			b.StartTimer()
			err := c.push(path)
			b.StopTimer()
			c.ns += time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			c.sent += testbench.SummarizeUploads(proxy.Take()).Bytes
		}
		os.Remove(path)
	}
	for _, c := range contenders {
		b.ReportMetric(float64(c.ns.Milliseconds())/float64(b.N), c.name+"-ms/op")
		b.ReportMetric(float64(c.sent-needed)/float64(b.N), c.name+"-B-extra/op")
	}
	b.ReportMetric(float64(needed)/float64(b.N), "B-needed/op")
}

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
