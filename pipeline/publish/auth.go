package publish

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// CheckPull checks, changing nothing, that the registry of repo accepts the credentials
// the options give for pulling from repo: a token for the pull scope where the registry
// hands out tokens, else an authenticated request to its API root (/v2/), which a registry
// with basic auth answers 401 for a wrong password. The error names the registry and the
// repository, never the credentials; a refusal wraps ErrUnauthorized.
func CheckPull(ctx context.Context, repo string, opts ...Option) error {
	o, err := makeOptions(opts)
	if err != nil {
		return fmt.Errorf("checking the registry credentials: %w", err)
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		return fmt.Errorf("checking the registry credentials: repository %q: %w: %w", repo, ErrInvalidReference, err)
	}
	doing := "checking the credentials for pulling"
	auth := o.auth
	if o.keychain != nil {
		if auth, err = o.keychain.Resolve(r); err != nil {
			return describe(err, doing, r)
		}
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	rt := o.transport
	if rt == nil {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		if o.rootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: o.rootCAs, MinVersion: tls.VersionTLS12}
		}
		rt = tr
	}
	t, err := transport.NewWithContext(ctx, r.Registry, auth, rt, []string{r.Scope(transport.PullScope)})
	if err != nil {
		return describe(err, doing, r)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", r.Registry.Scheme(), r.RegistryStr()), nil)
	if err != nil {
		return describe(err, doing, r)
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return describe(err, doing, r)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return describe(&transport.Error{StatusCode: resp.StatusCode, Request: req}, doing, r)
	}
	return nil
}
