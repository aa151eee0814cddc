package ssh

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
