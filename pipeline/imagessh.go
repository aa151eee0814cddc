package pipeline

import (
	"errors"
	"fmt"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

// Images without a registry (docker.registry: none, or an image tarball given for a docker
// environment whose file has no image settings): the publish stage names the release by its
// image ID, the digest of the image's config, and hands the tarball to the docker target,
// which sends each host the layers its engine lacks.

// imageIDRE is an engine's image ID.
var imageIDRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// overSSH reports whether env's images go to the hosts over SSH: docker.registry: none, or
// a docker environment given an image tarball when the file says nowhere to publish it.
func overSSH(env *config.Environment, f *config.File, art *Artifact) bool {
	if env.NoRegistry() {
		return true
	}
	return env.Docker != nil && (f == nil || f.Image == nil) && art != nil && art.ImagePath != ""
}

// ImageID is the image ID of the image tarball or OCI layout at path (the digest of its
// config): what a Docker engine names it once loaded, and the release's digest when it
// goes to the hosts over SSH.
func ImageID(path string) (string, error) {
	art, _, closeFn, err := publish.Open(path)
	if err != nil {
		return "", err
	}
	defer closeFn()
	img, ok := art.(v1.Image)
	if !ok {
		return "", fmt.Errorf("image %q is a multi-platform index: a Docker host without a registry gets one image; export the hosts' platform only", path)
	}
	h, err := img.ConfigName()
	if err != nil {
		return "", fmt.Errorf("digesting the config of image %q: %w", path, err)
	}
	return h.String(), nil
}

// checkOverSSH refuses what a deploy without a registry cannot use: a registry reference
// (the hosts would have to pull it). An image ID names an image the hosts keep already.
func checkOverSSH(env string, a *Artifact) error {
	if a.Image != "" && !imageIDRE.MatchString(a.Image) {
		return fmt.Errorf("environment %q has docker.registry: none, so its hosts pull from no registry: give the image as a tarball (--image-tar), not the registry reference %q; nothing was changed", env, a.Image)
	}
	return nil
}

// sendOverSSH is the publish stage of an image that goes to the hosts over SSH.
func (r *run) sendOverSSH() error {
	path := r.art.ImagePath
	if r.promote != "" {
		// The build stage promotes what is live in the source; the bytes still come from
		// the tarball given to the deploy.
		path = ""
		if r.req.Artifact != nil {
			path = r.req.Artifact.ImagePath
		}
	}
	if path == "" {
		id := r.art.Image
		if !imageIDRE.MatchString(digestOf(id)) {
			return errors.New("docker.registry: none: nothing to send: give the image tarball (--image-tar)")
		}
		r.setImage(digestOf(id))
		return Skip("docker.registry: none and no image tarball: the hosts must keep image %s already", digestOf(id))
	}
	id, err := ImageID(path)
	if err != nil {
		return err
	}
	if r.promote != "" && id != digestOf(r.promote) {
		return fmt.Errorf("environment %q deploys only what is live in %q: the image tarball holds %s, but %q runs %s",
			r.req.Env, r.env.From, id, r.env.From, digestOf(r.promote))
	}
	r.setImage(id)
	r.release.ImageArchive = path
	return Skip("no registry: image %s goes to each host over SSH, only the layers it lacks", id)
}
