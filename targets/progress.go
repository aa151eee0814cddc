package targets

import "context"

// Progress is told how a host's upload goes, as it goes: the pipeline draws it (bars on a
// terminal, a line per host every few seconds otherwise) and counts what each host was
// sent for the deploy's summary. Hosts find it in the context of Prepare (ProgressOf);
// Upload is called from many goroutines at once.
type Progress interface {
	Upload(host string, t Transfer)
}

// Transfer is an upload to one host so far, or a pull the host makes itself.
type Transfer struct {
	// Files and Bytes have reached the host, of TotalFiles and TotalBytes. A pull's totals
	// grow as the registry tells the host its layers' sizes.
	Files, TotalFiles int
	Bytes, TotalBytes int64
	// Layers says the files are an image's layers (an image sent or pulled).
	Layers bool
	// Pull says the host fetches them from a registry itself (docker pull): nothing is
	// sent by the deploy, so the record's hosts[].sent leaves it out.
	Pull bool
	// Done says the upload is over (Err says how, nil when everything was sent).
	Done bool
	Err  error
}

type progressKey struct{}

// WithProgress is ctx carrying p, for the Prepare of hosts that upload.
func WithProgress(ctx context.Context, p Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

// ProgressOf is the Progress ctx carries; one that discards everything when it carries none.
func ProgressOf(ctx context.Context) Progress {
	if p, ok := ctx.Value(progressKey{}).(Progress); ok && p != nil {
		return p
	}
	return noProgress{}
}

type noProgress struct{}

func (noProgress) Upload(string, Transfer) {}
