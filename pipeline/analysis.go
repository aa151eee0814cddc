package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Inconclusive handling of an analysis (Analysis.Inconclusive).
const (
	InconclusiveRetry = "retry" // a try that did not pass
	InconclusiveFail  = "fail"  // the analysis fails at once
	InconclusivePass  = "pass"  // counts as a pass
)

// Analysis is a measurement a canary step must pass: Query (a template over the canary,
// see config.Analysis) to the Prometheus HTTP API at Prometheus, every sample meeting
// Condition; measured every Interval, at most Tries times, passing once Count measurements
// in a row pass. Zero fields take the defaults noted.
type Analysis struct {
	Name       string
	Prometheus string
	Query      string
	Condition  config.Condition
	// Range makes it a range query over the last Range at resolution Step (default: a tenth
	// of Range, at least 1s). Default: an instant query.
	Range time.Duration
	Step  time.Duration
	// Interval is the wait between measurements. Default: 10s.
	Interval time.Duration
	// Count is how many measurements in a row must pass. Default: 1.
	Count int
	// Tries is how many measurements are made at most. Default: 3.
	Tries int
	// Inconclusive is InconclusiveRetry (default), InconclusiveFail or InconclusivePass.
	Inconclusive string
	// Timeout bounds one query. Default: 10s.
	Timeout time.Duration

	tmpl *template.Template
}

// AnalysisFromConfig makes the named analysis template of a file runnable.
func AnalysisFromConfig(name string, a *config.Analysis) (*Analysis, error) {
	c, err := config.ParseCondition(a.Condition)
	if err != nil {
		return nil, fmt.Errorf("analysis %q: %w", name, err)
	}
	out := &Analysis{Name: name, Prometheus: a.Prometheus, Query: a.Query, Condition: c,
		Range: a.Range.Duration, Step: a.Step.Duration, Interval: a.Interval.Duration,
		Count: a.Count, Tries: a.Tries, Inconclusive: a.Inconclusive, Timeout: a.Timeout.Duration}
	return out, out.validate()
}

func (a *Analysis) validate() error {
	if a.Name == "" {
		a.Name = "analysis"
	}
	if u, err := url.Parse(a.Prometheus); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("analysis %q: prometheus %q is not an http:// or https:// URL", a.Name, a.Prometheus)
	}
	if a.Condition.Op == "" {
		return fmt.Errorf("analysis %q: no condition", a.Name)
	}
	t, err := template.New(a.Name).Option("missingkey=error").Parse(a.Query)
	if err != nil {
		return fmt.Errorf("analysis %q: query template: %w", a.Name, err)
	}
	if strings.TrimSpace(a.Query) == "" {
		return fmt.Errorf("analysis %q: no query", a.Name)
	}
	a.tmpl = t
	if a.Range > 0 && a.Step <= 0 {
		a.Step = max(time.Second, a.Range/10)
	}
	if a.Interval <= 0 {
		a.Interval = 10 * time.Second
	}
	if a.Count <= 0 {
		a.Count = 1
	}
	if a.Tries <= 0 {
		a.Tries = max(3, a.Count)
	}
	if a.Count > a.Tries {
		return fmt.Errorf("analysis %q: %d measurements in a row cannot pass within %d tries", a.Name, a.Count, a.Tries)
	}
	switch a.Inconclusive {
	case "":
		a.Inconclusive = InconclusiveRetry
	case InconclusiveRetry, InconclusiveFail, InconclusivePass:
	default:
		return fmt.Errorf("analysis %q: inconclusive %q: want retry, fail or pass", a.Name, a.Inconclusive)
	}
	if a.Timeout <= 0 {
		a.Timeout = 10 * time.Second
	}
	return nil
}

// Measurement outcomes.
const (
	measurePass         = "pass"
	measureFail         = "fail"
	measureInconclusive = "inconclusive"
)

// measurement is one query's verdict and what it saw, for the log and the record.
type measurement struct {
	verdict string
	detail  string
}

// QueryError is a query Prometheus refused as malformed (bad_data): no try can pass, so
// the analysis fails at once.
type QueryError struct {
	Query string
	Msg   string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("prometheus refused query %q: %s", e.Query, e.Msg)
}

// run measures until Count measurements in a row pass (nil, and what the last one saw) or
// the analysis fails: Tries run out, an inconclusive measurement with Inconclusive fail, a
// query Prometheus refuses.
func (a *Analysis) run(ctx context.Context, data map[string]string, logf func(string, ...any)) (string, error) {
	var q strings.Builder
	if err := a.tmpl.Execute(&q, data); err != nil {
		return "", fmt.Errorf("rendering the query: %w", err)
	}
	query := q.String()
	kind := "instant"
	if a.Range > 0 {
		kind = fmt.Sprintf("range %s, step %s", a.Range, a.Step)
	}
	logf("analysis %s: %s (%s; every %s, %d in a row of at most %d tries)", a.Name, query, kind, a.Interval, a.Count, a.Tries)
	inRow, tries := 0, 0
	var last measurement
	for try := 1; try <= a.Tries; try++ {
		tries = try
		if try > 1 {
			select {
			case <-ctx.Done():
				return last.detail, fmt.Errorf("stopped after %d measurement(s): %w", try-1, context.Cause(ctx))
			case <-time.After(a.Interval):
			}
		}
		m, err := a.measure(ctx, query)
		if err != nil {
			return m.detail, err
		}
		if m.verdict == measureInconclusive {
			switch a.Inconclusive {
			case InconclusiveFail:
				return m.detail, fmt.Errorf("inconclusive: %s", m.detail)
			case InconclusivePass:
				m.verdict = measurePass
			}
		}
		last = m
		logf("analysis %s: try %d/%d: %s: %s", a.Name, try, a.Tries, m.verdict, m.detail)
		if m.verdict != measurePass {
			inRow = 0
		} else if inRow++; inRow >= a.Count {
			return m.detail, nil
		}
		if a.Tries-try < a.Count-inRow {
			break // the passes still needed no longer fit in the tries left
		}
	}
	if last.verdict == measureInconclusive {
		return last.detail, fmt.Errorf("inconclusive after %d tries: %s", tries, last.detail)
	}
	return last.detail, fmt.Errorf("failed: %s (after %d tries; %d passing in a row needed of at most %d)", last.detail, tries, a.Count, a.Tries)
}

// promResponse is the Prometheus HTTP API's envelope.
type promResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

// measure runs the query once and judges every sample.
func (a *Analysis) measure(ctx context.Context, query string) (measurement, error) {
	qctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	base := strings.TrimSuffix(a.Prometheus, "/")
	v := url.Values{"query": {query}}
	now := time.Now()
	endpoint := base + "/api/v1/query"
	if a.Range > 0 {
		endpoint = base + "/api/v1/query_range"
		v.Set("start", strconv.FormatFloat(float64(now.Add(-a.Range).UnixMilli())/1000, 'f', 3, 64))
		v.Set("end", strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', 3, 64))
		v.Set("step", strconv.FormatFloat(a.Step.Seconds(), 'f', -1, 64))
	} else {
		v.Set("time", strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', 3, 64))
	}
	req, err := http.NewRequestWithContext(qctx, http.MethodPost, endpoint, strings.NewReader(v.Encode()))
	if err != nil {
		return measurement{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return measurement{verdict: measureInconclusive, detail: fmt.Sprintf("querying %s: %v", base, err)}, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	var pr promResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return measurement{verdict: measureInconclusive, detail: fmt.Sprintf("%s answered %s, not the Prometheus API: %s", base, resp.Status, tail(body, 200))}, nil
	}
	if pr.Status != "success" {
		if pr.ErrorType == "bad_data" {
			return measurement{detail: pr.Error}, &QueryError{Query: query, Msg: pr.Error}
		}
		return measurement{verdict: measureInconclusive, detail: fmt.Sprintf("%s: %s: %s", base, pr.ErrorType, pr.Error)}, nil
	}
	return a.judge(pr.Data.ResultType, pr.Data.Result)
}

// judge applies the condition to every sample of a result.
func (a *Analysis) judge(kind string, raw json.RawMessage) (measurement, error) {
	type point struct {
		series string
		value  float64
	}
	var pts []point
	parse := func(series string, p [2]any) error {
		s, ok := p[1].(string)
		if !ok {
			return fmt.Errorf("sample value %v is not a string", p[1])
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("sample value %q: %w", s, err)
		}
		pts = append(pts, point{series, f})
		return nil
	}
	var err error
	switch kind {
	case "scalar":
		var p [2]any
		if err = json.Unmarshal(raw, &p); err == nil {
			err = parse("scalar", p)
		}
	case "vector", "matrix":
		var ss []promSample
		if err = json.Unmarshal(raw, &ss); err != nil {
			break
		}
		for _, s := range ss {
			name := labels(s.Metric)
			vals := s.Values
			if kind == "vector" {
				vals = [][2]any{s.Value}
			}
			for _, p := range vals {
				if err == nil {
					err = parse(name, p)
				}
			}
		}
	default:
		err = fmt.Errorf("result type %q cannot be judged: want a number (scalar, vector or matrix)", kind)
	}
	if err != nil {
		return measurement{verdict: measureInconclusive, detail: err.Error()}, nil
	}
	if len(pts) == 0 {
		return measurement{verdict: measureInconclusive, detail: "no data: the query matched no series"}, nil
	}
	for _, p := range pts {
		if math.IsNaN(p.value) || math.IsInf(p.value, 0) {
			return measurement{verdict: measureInconclusive, detail: fmt.Sprintf("%s is %v: nothing to judge (no traffic?)", p.series, p.value)}, nil
		}
	}
	worst := pts[0]
	for _, p := range pts {
		if !a.Condition.Met(p.value) {
			return measurement{verdict: measureFail, detail: fmt.Sprintf("%s = %s, want %s", p.series, fmtFloat(p.value), a.Condition)}, nil
		}
		worst = p
	}
	return measurement{verdict: measurePass, detail: fmt.Sprintf("%d sample(s) %s (last %s = %s)", len(pts), a.Condition, worst.series, fmtFloat(worst.value))}, nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', 4, 64) }

// labels prints a series' labels as PromQL does: {a="1", b="2"}.
func labels(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
