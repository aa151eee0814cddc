package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
)

// TestPhases: the order apply follows, from batches and bake or from canary steps; a
// rollback's is batches alone.
func TestPhases(t *testing.T) {
	hosts := make([]targets.Host, 4) // phases look at the count only
	an := &Analysis{Name: "errors"}
	show := func(ps []phase) string {
		var out []string
		for _, p := range ps {
			switch {
			case p.batch != nil:
				out = append(out, "switch "+string(rune('0'+len(p.batch))))
			case p.bake > 0:
				out = append(out, "bake "+p.bake.String())
			case p.analysis != nil:
				out = append(out, "analysis")
			}
		}
		return strings.Join(out, ", ")
	}
	for _, tc := range []struct {
		name  string
		o     options
		plain bool
		want  string
	}{
		{"one batch", options{}, false, "switch 4"},
		{"batches and bake", options{batchSize: 3, bake: time.Minute}, false, "switch 3, bake 1m0s, switch 1, bake 1m0s"},
		{"a rollback never bakes", options{batchSize: 3, bake: time.Minute}, true, "switch 3, switch 1"},
		{"canary", options{steps: []Step{{Hosts: 1}, {Bake: time.Second}, {Analysis: an}, {Percent: 50}, {Analysis: an}, {Percent: 100}}}, false,
			"switch 1, bake 1s, analysis, switch 1, analysis, switch 2"},
		{"the rest at the end", options{steps: []Step{{Percent: 25}, {Analysis: an}}}, false, "switch 1, analysis, switch 3"},
		{"a step that adds no host", options{steps: []Step{{Hosts: 2}, {Percent: 50}, {Analysis: an}}}, false, "switch 2, analysis, switch 2"},
		{"a rollback has no canary", options{steps: []Step{{Hosts: 1}, {Analysis: an}}}, true, "switch 4"},
	} {
		if got := show(tc.o.phases(hosts, tc.plain)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestStepAndAnalysisOptionsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithSteps(Step{Hosts: 1, Bake: time.Second})}, "give exactly one of hosts, percent, bake and analysis"},
		{[]Option{WithSteps(Step{Percent: 120})}, "percent: 120: must be from 1 to 100"},
		{[]Option{WithSteps(Step{Hosts: 1}), WithBatchSize(2)}, "canary steps and batches both say"},
		{[]Option{WithBake(-time.Second)}, "bake -1s: must not be negative"},
	} {
		if _, err := makeOptions(tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if _, err := AnalysisFromConfig("errors", &config.Analysis{Prometheus: "prom:9090", Query: "up", Condition: "< 1"}); err == nil || !strings.Contains(err.Error(), `prometheus "prom:9090" is not an http://`) {
		t.Errorf("analysis without a URL scheme: %v", err)
	}
}

// TestHostsPattern: names are quoted for a double-quoted PromQL string.
func TestHostsPattern(t *testing.T) {
	if got, want := hostsPattern([]string{"10.0.0.1:22", "web-2"}), `10\\.0\\.0\\.1:22|web-2`; got != want {
		t.Errorf("hostsPattern = %s, want %s", got, want)
	}
}
