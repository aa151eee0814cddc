package ssh

import "context"

// AwaitTrust makes a target use the first host's live chunks even when it hashed every file
// before they came, so that tests of trusting size and modification time do not depend on
// which comes first.
func AwaitTrust() Option {
	return func(o *options) error { o.awaitTrust = true; return nil }
}

// TarProbe is the tree script's question whether the host takes a tar stream (tarstream.go).
const TarProbe = tarProbe

// ParseTarProbe reads TarProbe's answer.
func ParseTarProbe(out []byte) (zstd, b2sum, ok bool) {
	th, ok := parseTarProbe(out)
	return th.zstd, th.b2sum, ok
}

// LiveChunks is what the first host tells a fresh machine of its live release's chunks, one
// "<sum> <stat sum> <last path>" line each (nil when it tells nothing).
func LiveChunks(t *Target) ([]string, error) {
	cs, err := t.hosts[0].liveChunks(context.Background())
	var out []string
	for _, c := range cs {
		out = append(out, c.sum+" "+c.stat+" "+c.last)
	}
	return out, err
}
