package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// journalKey is the ConfigMap key holding the records, one JSON document a line.
const journalKey = "records.jsonl"

// journalMaxBytes keeps the ConfigMap well under the API server's 1 MiB object limit.
const journalMaxBytes = 768 << 10

// Journal keeps the deployment records in the ConfigMap "pushdeploy-<app>-<env>-journal",
// one JSON document a line under records.jsonl, the newest last, bounded by
// WithJournalLimit and by size. Writes are updates on the resourceVersion read.
type Journal struct {
	t    *Target
	name string
}

// Name is the ConfigMap's name.
func (j *Journal) Name() string { return j.name }

func (j *Journal) where() string { return fmt.Sprintf("config map %q in namespace %q", j.name, j.t.ns) }

// Append adds record as the newest, dropping the oldest beyond the limit.
func (j *Journal) Append(ctx context.Context, record json.RawMessage) error {
	var line bytes.Buffer
	if err := json.Compact(&line, record); err != nil {
		return fmt.Errorf("deployment record is not JSON: %w", err)
	}
	if line.Len() > journalMaxBytes {
		return fmt.Errorf("deployment record of %d bytes does not fit the journal (%s)", line.Len(), j.where())
	}
	if err := j.t.Preflight(ctx); err != nil {
		return err
	}
	cms := j.t.cs.CoreV1().ConfigMaps(j.t.ns)
	for range retries {
		cm, err := cms.Get(ctx, j.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: j.name, Namespace: j.t.ns, Labels: map[string]string{
					"app.kubernetes.io/managed-by": "pushdeploy", "pushdeploy.dev/app": j.t.app, "pushdeploy.dev/env": j.t.env,
				}},
				Data: map[string]string{journalKey: line.String() + "\n"},
			}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: j.t.o.fieldManager})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("creating the journal (%s): %w", j.where(), err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the journal (%s): %w", j.where(), err)
		}
		lines := append(splitLines(cm.Data[journalKey]), line.String())
		size := 0
		for _, l := range lines {
			size += len(l) + 1
		}
		for len(lines) > j.t.o.journalLimit || size > journalMaxBytes {
			size -= len(lines[0]) + 1
			lines = lines[1:]
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[journalKey] = strings.Join(lines, "\n") + "\n"
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: j.t.o.fieldManager})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the journal (%s): %w", j.where(), err)
		}
		return nil
	}
	return errors.New("writing the journal (" + j.where() + "): it kept changing under us")
}

// Records returns at most limit records, the newest last; limit <= 0 means all.
func (j *Journal) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	cm, err := j.t.cs.CoreV1().ConfigMaps(j.t.ns).Get(ctx, j.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the journal (%s): %w", j.where(), err)
	}
	lines := splitLines(cm.Data[journalKey])
	if limit > 0 && len(lines) > limit {
		lines = lines[len(lines)-limit:]
	}
	out := make([]json.RawMessage, len(lines))
	for i, l := range lines {
		out[i] = json.RawMessage(l)
	}
	return out, nil
}

func splitLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
