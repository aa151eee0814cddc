package ssh

// AwaitTrust makes a target use the first host's live chunks even when it hashed every file
// before they came, so that tests of trusting size and modification time do not depend on
// which comes first.
func AwaitTrust() Option {
	return func(o *options) error { o.awaitTrust = true; return nil }
}
