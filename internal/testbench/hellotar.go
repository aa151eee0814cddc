package testbench

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteHelloTarball writes the image spec describes to path as an image tarball, as a
// build (docker save, Dagger's Container.asTarball) would hand it to publish.
func WriteHelloTarball(t testing.TB, path string, spec HelloImage) {
	t.Helper()
	img, err := helloImage(HelloBinary(t), spec)
	if err != nil {
		t.Fatalf("building hello image: %v", err)
	}
	tag, _ := name.NewTag("pushdeploy.test/hello:" + spec.Version)
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatalf("writing hello image tarball: %v", err)
	}
}

// PushHelloRef pushes the image spec describes and returns its digest reference.
func PushHelloRef(t testing.TB, reg *Registry, repo string, spec HelloImage) string {
	ref, _ := PushHello(t, reg, repo, spec)
	return ref
}
