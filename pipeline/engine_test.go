package pipeline

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
)

func TestBatches(t *testing.T) {
	hosts := func(n int) []targets.Host {
		var out []targets.Host
		for i := 0; i < n; i++ {
			out = append(out, nil) // splitting looks at the count only
		}
		return out
	}
	sizes := func(b [][]targets.Host) (s []int) {
		for _, x := range b {
			s = append(s, len(x))
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		opts  []Option
		hosts int
		want  []int
	}{
		{"default is one batch", nil, 5, []int{5}},
		{"count", []Option{WithBatchSize(2)}, 5, []int{2, 2, 1}},
		{"count above hosts", []Option{WithBatchSize(9)}, 3, []int{3}},
		{"percent rounds up", []Option{WithBatchPercent(25)}, 5, []int{2, 2, 1}},
		{"one percent is one host", []Option{WithBatchPercent(1)}, 3, []int{1, 1, 1}},
		{"hundred percent", []Option{WithBatchPercent(100)}, 4, []int{4}},
	} {
		o, err := makeOptions(tc.opts...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := sizes(o.batches(hosts(tc.hosts))); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: batches %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOptionsRejectBadCombinations(t *testing.T) {
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithBatchSize(2), WithBatchPercent(50)}, "exclusive"},
		{[]Option{WithBatchSize(0)}, "batch size 0"},
		{[]Option{WithBatchPercent(101)}, "batch percent 101%"},
		{[]Option{WithKeep(1)}, "at least 2"},
		{[]Option{WithLockTTL(0)}, "lock ttl"},
		{[]Option{WithHealthCheck(HealthCheck{})}, "exactly one of url and command"},
		{[]Option{WithHealthCheck(HealthCheck{URL: "http://{{.Address"})}, "health check url"},
		{[]Option{WithHealthCheck(HealthCheck{URL: "http://x", Body: "("})}, "body pattern"},
	} {
		_, err := makeOptions(tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestPrunableSparesLiveAndPrevious(t *testing.T) {
	kept := func(ids ...string) (k []targets.Kept) {
		for _, id := range ids {
			k = append(k, targets.Kept{ID: id})
		}
		return k
	}
	for _, tc := range []struct {
		name string
		st   targets.Status
		keep int
		want []string
	}{
		{"under the limit", targets.Status{Live: &targets.Kept{ID: "3"}, Kept: kept("1", "2", "3")}, 5, nil},
		{"oldest go first", targets.Status{Live: &targets.Kept{ID: "5"}, Kept: kept("1", "2", "3", "4", "5")}, 3, []string{"1", "2"}},
		// After a rollback the live release is old: it and the one before it stay.
		{"live is old", targets.Status{Live: &targets.Kept{ID: "2"}, Kept: kept("1", "2", "3", "4")}, 2, []string{"3", "4"}},
		{"nothing live", targets.Status{Kept: kept("1", "2", "3")}, 2, []string{"1"}},
	} {
		if got := prunable(tc.st, tc.keep); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: prunable %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRollbackTo(t *testing.T) {
	st := targets.Status{Host: "h1", Live: &targets.Kept{ID: "3"}, Kept: []targets.Kept{{ID: "1"}, {ID: "2"}, {ID: "3"}}}
	if got, err := rollbackTo(st, ""); err != nil || got != "2" {
		t.Errorf("previous: got %q, %v; want 2", got, err)
	}
	if got, err := rollbackTo(st, "1"); err != nil || got != "1" {
		t.Errorf("named: got %q, %v; want 1", got, err)
	}
	if _, err := rollbackTo(st, "9"); err == nil || !strings.Contains(err.Error(), `host "h1" does not keep release "9" (kept: 1, 2, 3)`) {
		t.Errorf("unknown release: got %v", err)
	}
	first := targets.Status{Host: "h1", Live: &targets.Kept{ID: "1"}, Kept: []targets.Kept{{ID: "1"}}}
	if _, err := rollbackTo(first, ""); err == nil || !strings.Contains(err.Error(), "keeps no release older") {
		t.Errorf("first release: got %v", err)
	}
}

// addrHost is a host with an address, enough for rendering health URLs.
type addrHost struct {
	targets.Host
	name, addr string
}

func (h addrHost) Name() string    { return h.name }
func (h addrHost) Address() string { return h.addr }

func TestHealthURLTemplate(t *testing.T) {
	hc := HealthCheck{URL: "http://{{.Address}}:8080/health?host={{.Host}}&r={{.Release}}"}
	for _, tc := range []struct{ addr, want string }{
		{"10.0.0.1", "http://10.0.0.1:8080/health?host=web1&r=R1"},
		{"::1", "http://[::1]:8080/health?host=web1&r=R1"},
		{"web1.example.com", "http://web1.example.com:8080/health?host=web1&r=R1"},
	} {
		got, err := hc.url(addrHost{name: "web1", addr: tc.addr}, "R1")
		if err != nil || got != tc.want {
			t.Errorf("address %q: %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}
