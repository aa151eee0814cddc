package kubernetes

// SkipPreflight marks t's preflight as done, so that a test sees what each call does
// without the permissions the preflight would ask for first.
func SkipPreflight(t *Target) {
	t.pre.Lock()
	t.pre.ok = true
	t.pre.Unlock()
}
