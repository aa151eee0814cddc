package kubernetes

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	deploymentutil "k8s.io/kubectl/pkg/util/deployment"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Annotations pushdeploy writes. The release ones sit on the pod template, so that every
// ReplicaSet (every revision) carries the release it runs.
const (
	// AnnotationRelease is the release id.
	AnnotationRelease = "pushdeploy.dev/release"
	// AnnotationDigest is the image digest.
	AnnotationDigest = "pushdeploy.dev/digest"
	// AnnotationVersion is the source version.
	AnnotationVersion = "pushdeploy.dev/version"
	// AnnotationChangeCause is what `kubectl rollout history` shows for a revision.
	AnnotationChangeCause = "kubernetes.io/change-cause"
	// AnnotationFailed marks a ReplicaSet whose release's deploy failed and was undone, with
	// the time: a rollback without --to skips it. It sits on the ReplicaSet, not on the
	// Deployment, because `kubectl rollout undo` replaces the Deployment's annotations.
	AnnotationFailed = "pushdeploy.dev/failed"
)

// Deployment is one Deployment of the application: a host.
type Deployment struct {
	t          *Target
	name       string
	containers []string

	mu       sync.Mutex
	prepared map[string]targets.Release
	resolved []string // the containers a deploy sets, resolved by Preflight
}

// Name is "deployment/<name>".
func (d *Deployment) Name() string { return "deployment/" + d.name }

func (d *Deployment) get(ctx context.Context) (*appsv1.Deployment, error) {
	dep, err := d.t.cs.AppsV1().Deployments(d.t.ns).Get(ctx, d.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if err := d.t.namespaceExists(ctx); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("deployment %q not found in namespace %q", d.name, d.t.ns)
	}
	if err != nil {
		return nil, d.t.explain(ctx, fmt.Errorf("reading deployment %q in namespace %q: %w", d.name, d.t.ns, err))
	}
	return dep, nil
}

// checkContainers says which named containers the Deployment lacks, and keeps the
// resolved names for setImage.
func (d *Deployment) checkContainers(dep *appsv1.Deployment) error {
	names, err := d.names(dep)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.resolved = names
	d.mu.Unlock()
	return nil
}

// names resolves the containers a deploy sets on dep: the configured ones, all of which
// must exist; else its only container; else the one named like the Deployment.
func (d *Deployment) names(dep *appsv1.Deployment) ([]string, error) {
	have := map[string]bool{}
	var all []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		have[c.Name] = true
		all = append(all, c.Name)
	}
	if len(d.containers) == 0 {
		switch {
		case len(all) == 1:
			return all, nil
		case have[d.name]:
			return []string{d.name}, nil
		}
		return nil, fmt.Errorf("deployment %q has %d containers and none is named %q: name the ones to update (it has: %s)", d.name, len(all), d.name, strings.Join(all, ", "))
	}
	for _, c := range d.containers {
		if !have[c] {
			return nil, fmt.Errorf("deployment %q has no container %q (it has: %s)", d.name, c, strings.Join(all, ", "))
		}
	}
	return d.containers, nil
}

// primary is the container whose image status reports: the first one a deploy sets, else
// the first one.
func (d *Deployment) primary(dep *appsv1.Deployment) string {
	if n, err := d.names(dep); err == nil {
		return n[0]
	}
	if len(dep.Spec.Template.Spec.Containers) > 0 {
		return dep.Spec.Template.Spec.Containers[0].Name
	}
	return ""
}

// replicaSets lists the ReplicaSets the Deployment owns: its revisions.
func (d *Deployment) replicaSets(ctx context.Context, dep *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %q: selector: %w", d.name, err)
	}
	list, err := d.t.cs.AppsV1().ReplicaSets(d.t.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, d.t.explain(ctx, fmt.Errorf("listing the replica sets of deployment %q: %w", d.name, err))
	}
	var out []*appsv1.ReplicaSet
	for i := range list.Items {
		rs := &list.Items[i]
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == dep.UID {
			out = append(out, rs)
		}
	}
	return out, nil
}

// equalIgnoreHash compares pod templates as the Deployment controller and kubectl do: the
// ReplicaSet's copy carries a pod-template-hash label the Deployment's lacks.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

// current finds the ReplicaSet that runs the Deployment's template, nil if none does yet.
func current(dep *appsv1.Deployment, rss []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	var found *appsv1.ReplicaSet
	for _, rs := range rss {
		if equalIgnoreHash(&rs.Spec.Template, &dep.Spec.Template) {
			// Several can match after an API change of the template: the oldest is the one.
			if found == nil || rs.CreationTimestamp.Before(&found.CreationTimestamp) {
				found = rs
			}
		}
	}
	return found
}

// releaseID names the release a ReplicaSet runs: pushdeploy's annotation, or for a revision
// something else made, "rs-" and its pod-template hash (stable across rollbacks, unlike the
// revision number).
func releaseID(rs *appsv1.ReplicaSet) string {
	if id := rs.Spec.Template.Annotations[AnnotationRelease]; id != "" {
		return id
	}
	return "rs-" + rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
}

// firstRevision is the revision a ReplicaSet was first deployed at: the Deployment
// controller renumbers a ReplicaSet that comes back and records its earlier numbers in the
// revision-history annotation. (Creation timestamps have one-second resolution: too coarse.)
func firstRevision(rs *appsv1.ReplicaSet) int64 {
	first, _ := deploymentutil.Revision(rs)
	for v := range strings.SplitSeq(rs.Annotations[deploymentutil.RevisionHistoryAnnotation], ",") {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n < first {
			first = n
		}
	}
	return first
}

// kept describes the release a pod template runs, by the image of container primary.
func kept(tmpl *corev1.PodTemplateSpec, primary string) targets.Kept {
	k := targets.Kept{ID: tmpl.Annotations[AnnotationRelease], Version: tmpl.Annotations[AnnotationVersion], Digest: tmpl.Annotations[AnnotationDigest]}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == primary {
			k.Image = c.Image
		}
	}
	if k.Digest == "" {
		if _, dg, ok := strings.Cut(k.Image, "@"); ok {
			k.Digest = dg
		}
	}
	return k
}

// Revision is one entry of a Deployment's rollout history.
type Revision struct {
	Number      int64     `json:"revision"`
	ID          string    `json:"id"`
	Version     string    `json:"version,omitempty"`
	Digest      string    `json:"digest,omitempty"`
	Image       string    `json:"image,omitempty"`
	ChangeCause string    `json:"changeCause,omitempty"`
	Created     time.Time `json:"created"`
	Live        bool      `json:"live,omitempty"`
}

// History lists the Deployment's revisions, oldest first, like `kubectl rollout history`.
func (d *Deployment) History(ctx context.Context) ([]Revision, error) {
	dep, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return nil, err
	}
	live, primary := current(dep, rss), d.primary(dep)
	var out []Revision
	for _, rs := range rss {
		n, _ := deploymentutil.Revision(rs)
		k := kept(&rs.Spec.Template, primary)
		out = append(out, Revision{Number: n, ID: releaseID(rs), Version: k.Version, Digest: k.Digest, Image: k.Image,
			ChangeCause: rs.Annotations[AnnotationChangeCause], Created: rs.CreationTimestamp.Time.UTC(), Live: rs == live})
	}
	slices.SortFunc(out, func(a, b Revision) int { return cmp.Compare(a.Number, b.Number) })
	return out, nil
}

// Status reports the release the Deployment's template runs and the releases its
// ReplicaSets keep (oldest first, by when each was first deployed), each with its
// activation order (the ReplicaSet's revision: the controller renumbers one that comes back,
// so the highest is the last to go live), whether its deploy failed and whether pushdeploy
// made it; the rollout's state as kubectl sees it; and the revision and replica counts in
// Detail.
func (d *Deployment) Status(ctx context.Context) (targets.Status, error) {
	dep, err := d.get(ctx)
	if err != nil {
		return targets.Status{}, err
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return targets.Status{}, err
	}
	// First deployed first: after a rollback the restored ReplicaSet takes the newest
	// revision number, but it is still the older release.
	slices.SortFunc(rss, func(a, b *appsv1.ReplicaSet) int {
		return cmp.Or(cmp.Compare(firstRevision(a), firstRevision(b)), a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	st, primary := targets.Status{Host: d.Name()}, d.primary(dep)
	for _, rs := range rss {
		k := kept(&rs.Spec.Template, primary)
		k.ID, k.Created = releaseID(rs), rs.CreationTimestamp.Time.UTC()
		k.Foreign = rs.Spec.Template.Annotations[AnnotationRelease] == ""
		k.Failed = rs.Annotations[AnnotationFailed] != ""
		if n, err := deploymentutil.Revision(rs); err == nil {
			k.Note = fmt.Sprintf("revision %d", n)
			k.Activated = n
		}
		if cause := rs.Annotations[AnnotationChangeCause]; cause != "" {
			k.Note += ": " + cause
		}
		if k.Failed {
			k.Note += " (deploy failed " + rs.Annotations[AnnotationFailed] + ")"
		}
		st.Kept = append(st.Kept, k)
	}
	live := kept(&dep.Spec.Template, primary)
	rev := "no revision yet"
	newRS := current(dep, rss)
	if newRS != nil {
		live.ID, live.Created = releaseID(newRS), newRS.CreationTimestamp.Time.UTC()
		live.Foreign = newRS.Spec.Template.Annotations[AnnotationRelease] == ""
		live.Failed = newRS.Annotations[AnnotationFailed] != ""
		if n, err := deploymentutil.Revision(newRS); err == nil {
			rev = fmt.Sprintf("revision %d", n)
			live.Activated = n
		}
	}
	if live.ID != "" {
		st.Live = &live
	}
	st.Rollout, st.RolloutReason = d.rolloutState(ctx, dep, newRS)
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	s := dep.Status
	st.Detail = fmt.Sprintf("%s, image %s: %d/%d ready, %d updated, %d available", rev, live.Image, s.ReadyReplicas, want, s.UpdatedReplicas, s.AvailableReplicas)
	if dep.Spec.Paused {
		st.Detail += ", paused"
	}
	return st, nil
}

// Rollout states of Status.Rollout.
const (
	RolloutComplete    = "complete"
	RolloutProgressing = "progressing"
	RolloutStuck       = "stuck"
)

// rolloutState judges the Deployment's rollout as the deploy's wait does, once: complete,
// progressing, or stuck (the progress deadline passed, or a new pod fails the fail-fast
// rules), with kubectl's status viewer's message or the failing pod's reason.
func (d *Deployment) rolloutState(ctx context.Context, dep *appsv1.Deployment, newRS *appsv1.ReplicaSet) (state, reason string) {
	msg, done, err := rolloutStatus(dep, nil, time.Now(), d.t.o.failFast)
	switch {
	case err != nil:
		return RolloutStuck, err.Error()
	case done:
		return RolloutComplete, msg
	}
	if newRS != nil {
		sel := labels.Set(newRS.Spec.Selector.MatchLabels).AsSelector()
		if pods, err := d.t.cs.CoreV1().Pods(d.t.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()}); err == nil {
			ps := make([]*corev1.Pod, len(pods.Items))
			for i := range pods.Items {
				ps[i] = &pods.Items[i]
			}
			if f, _ := failure(dep, ps, time.Now(), d.t.o.failFast); f != nil {
				return RolloutStuck, f.Error()
			}
		}
	}
	return RolloutProgressing, msg
}

// Plan says which container images deploying r changes.
func (d *Deployment) Plan(ctx context.Context, r targets.Release) (targets.Change, error) {
	dep, err := d.get(ctx)
	if err != nil {
		return targets.Change{}, err
	}
	names, err := d.names(dep)
	if err != nil {
		return targets.Change{}, err
	}
	ch := targets.Change{Host: d.Name(), Live: dep.Spec.Template.Annotations[AnnotationRelease], Noop: true}
	var from []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if slices.Contains(names, c.Name) && c.Image != r.Image {
			ch.Noop = false
			ch.Update = append(ch.Update, fmt.Sprintf("spec.template.spec.containers[%s].image", c.Name))
			from = append(from, c.Image)
		}
	}
	if !ch.Noop {
		ch.Summary = fmt.Sprintf("image %s -> %s", strings.Join(slices.Compact(from), ", "), r.Image)
	}
	return ch, nil
}

// Prepare checks the release and the Deployment (through Preflight); there is nothing to
// upload: the cluster pulls the image when the pods start.
func (d *Deployment) Prepare(ctx context.Context, r targets.Release) error {
	_, dg, ok := strings.Cut(r.Image, "@")
	switch {
	case r.Image == "":
		return fmt.Errorf("release %q has no image for deployment %q", r.ID, d.name)
	case !ok || !strings.HasPrefix(dg, "sha256:"):
		return fmt.Errorf("release %q: image %q is not pinned by digest (want repo@sha256:...)", r.ID, r.Image)
	case r.Digest != "" && r.Digest != dg:
		return fmt.Errorf("release %q: image %q does not have the release's digest %q", r.ID, r.Image, r.Digest)
	}
	if err := d.t.Preflight(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	// One deploy at a time: what an earlier deploy of this process prepared is history now,
	// and a Discard of it (pruning) must not mark it failed.
	d.prepared = map[string]targets.Release{r.ID: r}
	d.mu.Unlock()
	return nil
}

// Discard forgets a prepared release. ReplicaSets stay: the Deployment's
// revisionHistoryLimit prunes them, as it does for kubectl. A release prepared in this
// process is discarded only when its deploy failed (the engine discards what it staged
// after undoing it; pruning names older releases): its ReplicaSet gets AnnotationFailed,
// so that "previous" skips it from now on.
func (d *Deployment) Discard(ctx context.Context, id string) error {
	d.mu.Lock()
	_, failed := d.prepared[id]
	delete(d.prepared, id)
	d.mu.Unlock()
	if !failed {
		return nil
	}
	return d.markFailed(ctx, id, time.Now())
}

// markFailed annotates the ReplicaSet that ran release id (if the controller made one) with
// AnnotationFailed and the time at; the zero time removes the mark.
func (d *Deployment) markFailed(ctx context.Context, id string, at time.Time) error {
	dep, err := d.get(ctx)
	if err != nil {
		return err
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return err
	}
	var v any // null removes the annotation in a merge patch
	if !at.IsZero() {
		v = at.UTC().Format(time.RFC3339)
	}
	for _, rs := range rss {
		if releaseID(rs) != id || (v == nil && rs.Annotations[AnnotationFailed] == "") {
			continue
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationFailed: v}}})
		if err != nil {
			return err
		}
		if _, err := d.t.cs.AppsV1().ReplicaSets(d.t.ns).Patch(ctx, rs.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: d.t.o.fieldManager}); err != nil {
			return fmt.Errorf("marking replica set %q of deployment %q (release %q) as failed: %w", rs.Name, d.name, id, err)
		}
	}
	return nil
}

// Activate makes release id live and waits for the rollout: a release prepared in this
// process gets its image set; any other id is a kept revision, whose pod template comes
// back (`kubectl rollout undo --to-revision`).
func (d *Deployment) Activate(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("deployment %q: no release to go back to (a Deployment always runs one: roll back to a kept release instead)", d.name)
	}
	if err := d.t.Preflight(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	r, ok := d.prepared[id]
	d.mu.Unlock()
	var gen int64
	var err error
	if ok {
		gen, err = d.setImage(ctx, r)
	} else {
		gen, err = d.undo(ctx, id)
	}
	if err != nil {
		return err
	}
	if err := d.wait(ctx, gen); err != nil {
		return err
	}
	if !ok {
		// A kept release rolled out: should its deploy once have failed (rollback --to
		// it), it is good now.
		return d.markFailed(ctx, id, time.Time{})
	}
	return nil
}

// changeCause is the revision's line in `kubectl rollout history`.
func changeCause(r targets.Release) string {
	s := "pushdeploy " + r.ID
	if r.Version != "" {
		s += " " + r.Version
	}
	s += " " + r.Digest
	if r.Deployer != "" {
		s += " by " + r.Deployer
	}
	if r.PipelineID != "" {
		s += " (" + r.PipelineID + ")"
	}
	return s
}

// setImage patches the named containers' image and the release annotations, and returns
// the Deployment's generation that carries them.
func (d *Deployment) setImage(ctx context.Context, r targets.Release) (generation int64, err error) {
	digest := r.Digest
	if digest == "" {
		_, digest, _ = strings.Cut(r.Image, "@")
	}
	var version any = r.Version
	if r.Version == "" {
		version = nil // null deletes the previous release's version in a strategic merge
	}
	d.mu.Lock()
	names := d.resolved
	d.mu.Unlock()
	if names == nil { // not resolved by Preflight: it always is, but cheaply safe
		dep, err := d.get(ctx)
		if err != nil {
			return 0, err
		}
		if names, err = d.names(dep); err != nil {
			return 0, err
		}
	}
	containers := make([]map[string]string, len(names))
	for i, c := range names {
		containers[i] = map[string]string{"name": c, "image": r.Image}
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationChangeCause: changeCause(r)}},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{AnnotationRelease: r.ID, AnnotationDigest: digest, AnnotationVersion: version}},
			"spec":     map[string]any{"containers": containers},
		}},
	})
	if err != nil {
		return 0, err
	}
	dep, err := d.t.cs.AppsV1().Deployments(d.t.ns).Patch(ctx, d.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: d.t.o.fieldManager})
	if err != nil {
		return 0, fmt.Errorf("setting image %s on deployment %q: %w", r.Image, d.name, err)
	}
	return dep.Generation, nil
}

// undo restores the pod template of the ReplicaSet that runs release id, with that
// revision's annotations, exactly as kubectl's DeploymentRollbacker does (same JSON patch,
// same annotations kept). It is not called directly: it takes no context, re-reads what we
// read already, and sends no field manager. It returns the generation to wait for.
func (d *Deployment) undo(ctx context.Context, id string) (generation int64, err error) {
	dep, err := d.get(ctx)
	if err != nil {
		return 0, err
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return 0, err
	}
	var rs *appsv1.ReplicaSet
	var ids []string
	for _, x := range rss {
		ids = append(ids, releaseID(x))
		if releaseID(x) == id {
			rs = x
		}
	}
	if rs == nil {
		return 0, fmt.Errorf("deployment %q keeps no revision of release %q (kept: %s)", d.name, id, strings.Join(ids, ", "))
	}
	if equalIgnoreHash(&rs.Spec.Template, &dep.Spec.Template) {
		return dep.Generation, nil // the template runs it already: wait for the rollout only
	}
	if dep.Spec.Paused {
		return 0, fmt.Errorf("deployment %q is paused: resume it (kubectl rollout resume) before rolling back", d.name)
	}
	tmpl := rs.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	annotations := map[string]string{}
	for k := range annotationsToSkip {
		if v, ok := dep.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	for k, v := range rs.Annotations {
		if !annotationsToSkip[k] {
			annotations[k] = v
		}
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/spec/template", "value": tmpl},
		{"op": "replace", "path": "/metadata/annotations", "value": annotations},
	})
	if err != nil {
		return 0, err
	}
	dep, err = d.t.cs.AppsV1().Deployments(d.t.ns).Patch(ctx, d.name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: d.t.o.fieldManager})
	if err != nil {
		n, _ := deploymentutil.Revision(rs)
		return 0, fmt.Errorf("restoring revision %d (release %q) of deployment %q: %w", n, id, d.name, err)
	}
	return dep.Generation, nil
}

// annotationsToSkip are the Deployment's own annotations a rollback keeps rather than
// taking the ReplicaSet's (kubectl's list).
var annotationsToSkip = map[string]bool{
	corev1.LastAppliedConfigAnnotation:       true,
	deploymentutil.RevisionAnnotation:        true,
	deploymentutil.RevisionHistoryAnnotation: true,
	deploymentutil.DesiredReplicasAnnotation: true,
	deploymentutil.MaxReplicasAnnotation:     true,
	appsv1.DeprecatedRollbackTo:              true,
}
