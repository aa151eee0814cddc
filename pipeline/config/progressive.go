package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/template"
)

// Step is one step of a canary: exactly one of hosts, percent, bake and analysis.
type Step struct {
	// Hosts is how many hosts run the new release once the step is done (counted from the
	// first host, in the order the target lists them).
	Hosts int `yaml:"hosts,omitempty" jsonschema:"minimum=1"`
	// Percent is the share of the hosts that runs the new release once the step is done,
	// rounded up, at least one host.
	Percent int `yaml:"percent,omitempty" jsonschema:"minimum=1,maximum=100"`
	// Bake probes every switched host's health for this long; a failure rolls back.
	Bake Duration `yaml:"bake,omitempty"`
	// Analysis names a template of the environment's analysis that must pass.
	Analysis string `yaml:"analysis,omitempty"`
}

// String is the step as the file writes it: "hosts: 1", "bake: 5m0s".
func (s Step) String() string {
	switch {
	case s.Hosts > 0:
		return fmt.Sprintf("hosts: %d", s.Hosts)
	case s.Percent > 0:
		return fmt.Sprintf("percent: %d", s.Percent)
	case s.Bake.Duration > 0:
		return "bake: " + s.Bake.String()
	case s.Analysis != "":
		return "analysis: " + s.Analysis
	}
	return "(empty step)"
}

// Analysis is a measurement a canary step must pass: a PromQL query to a Prometheus HTTP
// API, whose every sample must meet the condition. It is measured every interval, at most
// tries times, and passes once count measurements in a row pass.
type Analysis struct {
	// Prometheus is the base URL of the Prometheus HTTP API, e.g. "http://prometheus:9090".
	Prometheus string `yaml:"prometheus" jsonschema:"required"`
	// Query is a PromQL expression, first a Go template over the canary: {{.Hosts}} is a
	// regular expression matching the names of the hosts that run the new release (for
	// label matchers: host=~"{{.Hosts}}"), {{.Others}} the same of the rest of the fleet,
	// {{.Addresses}} and {{.OtherAddresses}} of their addresses, {{.Release}},
	// {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}} and {{.Env}} the record's fields.
	Query string `yaml:"query" jsonschema:"required"`
	// Condition is what every sample's value must meet: an operator (<, <=, >, >=, ==, !=)
	// and a number, e.g. "< 0.05".
	Condition string `yaml:"condition" jsonschema:"required"`
	// Range makes it a range query over the last range (every point of every series must
	// pass). Default: an instant query.
	Range Duration `yaml:"range,omitempty"`
	// Step is the resolution of a range query. Default: a tenth of range, at least 1s.
	Step Duration `yaml:"step,omitempty"`
	// Interval is the wait between measurements. Default: "10s".
	Interval Duration `yaml:"interval,omitempty"`
	// Count is how many measurements in a row must pass. Default: 1.
	Count int `yaml:"count,omitempty" jsonschema:"minimum=1"`
	// Tries is how many measurements are made at most; when they run out before count
	// passed in a row, the analysis fails and the deploy rolls back. Default: 3.
	Tries int `yaml:"tries,omitempty" jsonschema:"minimum=1"`
	// Inconclusive says what a measurement with no number to judge is (no series, NaN, the
	// server unreachable): "retry" (a try that did not pass), "fail" (the analysis fails at
	// once) or "pass". Default: "retry".
	Inconclusive string `yaml:"inconclusive,omitempty" jsonschema:"enum=retry,enum=fail,enum=pass"`
	// Timeout bounds one query. Default: "10s".
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Migrate is the deploy's migration command.
type Migrate struct {
	// Command is the shell command, with the PUSHDEPLOY_* variables.
	Command string `yaml:"command" jsonschema:"required"`
	// Irreversible says the command makes a change that running the previous release
	// again cannot undo (a schema migration that drops a column): once it ran, an automatic
	// rollback stops there and leaves every host as it is, and rollback across the release
	// refuses unless --force. Default: false.
	Irreversible bool `yaml:"irreversible,omitempty"`
}

// Condition is a parsed analysis condition: "< 0.05".
type Condition struct {
	Op    string
	Value float64
}

// ParseCondition reads "< 0.05", "<=1", ">= 0.99", "== 0", "!= 0".
func ParseCondition(s string) (Condition, error) {
	t := strings.TrimSpace(s)
	for _, op := range []string{"<=", ">=", "==", "!=", "<", ">"} {
		if rest, ok := strings.CutPrefix(t, op); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return Condition{}, fmt.Errorf("condition %q: %q is not a number", s, strings.TrimSpace(rest))
			}
			return Condition{Op: op, Value: v}, nil
		}
	}
	return Condition{}, fmt.Errorf("condition %q: want an operator (<, <=, >, >=, ==, !=) and a number, like \"< 0.05\"", s)
}

// Met says whether v meets the condition.
func (c Condition) Met(v float64) bool {
	switch c.Op {
	case "<":
		return v < c.Value
	case "<=":
		return v <= c.Value
	case ">":
		return v > c.Value
	case ">=":
		return v >= c.Value
	case "==":
		return v == c.Value
	case "!=":
		return v != c.Value
	}
	return false
}

func (c Condition) String() string { return c.Op + " " + strconv.FormatFloat(c.Value, 'g', -1, 64) }

// AnalysisFields are stand-ins for the fields an analysis query sees, for checking it.
var AnalysisFields = map[string]string{
	"Hosts": "web-1", "Others": "web-2|web-3", "Addresses": "10\\.0\\.0\\.1", "OtherAddresses": "10\\.0\\.0\\.2",
	"Release": "20260101T000000.000Z", "Version": "v1.2.3", "Digest": "sha256:0", "Image": "registry/app@sha256:0",
	"App": "app", "Env": "staging",
}

// progressive checks bake, steps, analysis and the migrate hook of environment e at p.
func (v *validation) progressive(p string, e *Environment) {
	if len(e.Steps) > 0 && !e.Batches.IsZero() {
		v.errorf(p+".steps", "steps and batches both say how many hosts go live at a time: give one")
	}
	last := 0 // the share of hosts live after the last host step, in percent or hosts
	lastKind := ""
	for i, s := range e.Steps {
		sp := fmt.Sprintf("%s.steps[%d]", p, i)
		var keys []string
		for _, k := range []struct {
			name string
			set  bool
		}{{"hosts", s.Hosts != 0}, {"percent", s.Percent != 0}, {"bake", s.Bake.Duration != 0}, {"analysis", s.Analysis != ""}} {
			if k.set {
				keys = append(keys, k.name)
			}
		}
		switch len(keys) {
		case 0:
			v.errorf(sp, "an empty step: give one of hosts, percent, bake and analysis")
			continue
		case 1:
		default:
			v.errorf(sp, "has %s: a step is one of hosts, percent, bake and analysis (write them as steps of their own)", strings.Join(keys, " and "))
			continue
		}
		switch {
		case s.Hosts != 0 || s.Percent != 0:
			kind, n := "hosts", s.Hosts
			if s.Percent != 0 {
				kind, n = "percent", s.Percent
			}
			if lastKind == kind && n <= last {
				v.errorf(sp, "%s: %d after %s: %d: each step puts more hosts live than the one before", kind, n, kind, last)
			}
			if kind == "hosts" && e.Kind() != "" {
				if hosts := e.hostCount(); hosts > 0 && n > hosts {
					v.errorf(sp, "hosts: %d, but the environment has %d host(s)", n, hosts)
				}
			}
			last, lastKind = n, kind
		case s.Analysis != "":
			if _, ok := e.Analysis[s.Analysis]; !ok {
				v.errorf(sp+".analysis", "analysis %q is not in the environment's analysis (known: %s)", s.Analysis, quoteList(sortedKeys(e.Analysis)))
			}
		}
	}
	for _, name := range sortedKeys(e.Analysis) {
		a, ap := e.Analysis[name], p+".analysis."+name
		if a == nil {
			v.errorf(ap, "needs prometheus, query and condition")
			continue
		}
		if !nameRE.MatchString(name) {
			v.errorf(ap, "%q is not a valid analysis name: lower-case letters, digits and dashes", name)
		}
		if a.Prometheus != "" {
			if u, err := url.Parse(a.Prometheus); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.errorf(ap+".prometheus", "not an http:// or https:// URL of a Prometheus server")
			} else if u.User != nil {
				v.errorf(ap+".prometheus", "the URL holds a user or password: credentials do not belong in the file")
			}
		}
		if a.Query != "" {
			t, err := template.New("query").Option("missingkey=error").Parse(a.Query)
			if err == nil {
				err = t.Execute(&strings.Builder{}, AnalysisFields)
			}
			if err != nil {
				v.errorf(ap+".query", "invalid template (it may use {{.Hosts}}, {{.Others}}, {{.Addresses}}, {{.OtherAddresses}}, {{.Release}}, {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}} and {{.Env}}): %v", err)
			}
		}
		if a.Condition != "" {
			if _, err := ParseCondition(a.Condition); err != nil {
				v.errorf(ap+".condition", "%v", err)
			}
		}
		if a.Step.Duration != 0 && a.Range.Duration == 0 {
			v.errorf(ap+".step", "a step is the resolution of a range query: give range too")
		}
		if a.Count > 0 && a.Tries > 0 && a.Count > a.Tries {
			v.errorf(ap+".count", "%d measurements in a row cannot pass within %d tries", a.Count, a.Tries)
		}
		if a.Count > 0 && a.Tries == 0 && a.Count > 3 {
			v.errorf(ap+".count", "%d measurements in a row cannot pass within the default 3 tries: give tries", a.Count)
		}
	}
	if m := e.Hooks.Migrate; m != nil && strings.TrimSpace(m.Command) == "" {
		v.errorf(p+".hooks.migrate.command", "the migrate command is empty")
	}
}

// hostCount is how many hosts the environment lists (Deployments for kubernetes), 0 when
// it has no target.
func (e *Environment) hostCount() int {
	switch {
	case e.SSH != nil:
		return len(e.SSH.Hosts)
	case e.Docker != nil:
		return len(e.Docker.Hosts)
	case e.Kubernetes != nil:
		return len(e.Kubernetes.Deployments)
	}
	return 0
}
