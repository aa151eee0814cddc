package config_test

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// canaryBase is base with two more hosts, for canary steps.
const canaryBase = `app: web
environments:
  staging:
    ssh:
      hosts: [10.0.0.1, 10.0.0.2, 10.0.0.3]
      user: deploy
      path: /srv/web
`

const errorsAnalysis = `    analysis:
      errors:
        prometheus: http://prometheus:9090
        query: 'sum(rate(http_errors_total{host=~"{{.Hosts}}"}[5m]))'
        condition: "< 0.05"
`

// TestProgressiveFile: the example parses as written.
func TestProgressiveFile(t *testing.T) {
	f, err := config.Parse("pushdeploy.yaml", []byte(canaryBase+`    bake: 5m
    steps: [{hosts: 1}, {bake: 5m}, {analysis: errors}, {percent: 50}, {bake: 5m}, {analysis: errors}, {percent: 100}]
    hooks:
      migrate: {command: bin/migrate, irreversible: true}
`+errorsAnalysis))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.Env("staging")
	if len(e.Steps) != 7 || e.Steps[2].Analysis != "errors" || e.Steps[3].Percent != 50 || e.Bake.Minutes() != 5 || !e.Hooks.Migrate.Irreversible {
		t.Errorf("parsed %+v", e)
	}
}

// TestProgressiveErrors: bad steps and analysis templates are refused with the key at fault.
func TestProgressiveErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"two keys in a step": {canaryBase + "    steps: [{hosts: 1, bake: 5m}]\n",
			`environments.staging.steps[0]: has hosts and bake: a step is one of hosts, percent, bake and analysis`},
		"empty step": {canaryBase + "    steps: [{}]\n", `environments.staging.steps[0]: an empty step`},
		"shrinking": {canaryBase + "    steps: [{hosts: 2}, {hosts: 1}]\n",
			`environments.staging.steps[1]: hosts: 1 after hosts: 2: each step puts more hosts live than the one before`},
		"more hosts than the fleet": {canaryBase + "    steps: [{hosts: 4}]\n", `hosts: 4, but the environment has 3 host(s)`},
		"percent over 100":          {canaryBase + "    steps: [{percent: 150}]\n", `environments.staging.steps[0].percent`},
		"unknown analysis": {canaryBase + "    steps: [{analysis: latency}]\n" + errorsAnalysis,
			`environments.staging.steps[0].analysis: analysis "latency" is not in the environment's analysis (known: "errors")`},
		"steps and batches": {canaryBase + "    batches: 1\n    steps: [{hosts: 1}]\n", `steps and batches both say how many hosts go live at a time`},
		"bad condition": {canaryBase + strings.Replace(errorsAnalysis, `"< 0.05"`, `"about 0.05"`, 1),
			`environments.staging.analysis.errors.condition: condition "about 0.05": want an operator`},
		"bad number": {canaryBase + strings.Replace(errorsAnalysis, `"< 0.05"`, `"< five"`, 1), `"five" is not a number`},
		"bad template": {canaryBase + strings.Replace(errorsAnalysis, "{{.Hosts}}", "{{.Pods}}", 1),
			`environments.staging.analysis.errors.query: invalid template`},
		"bad prometheus": {canaryBase + strings.Replace(errorsAnalysis, "http://prometheus:9090", "prometheus:9090", 1),
			`environments.staging.analysis.errors.prometheus: not an http:// or https:// URL`},
		"credentials in prometheus": {canaryBase + strings.Replace(errorsAnalysis, "http://prometheus:9090", "http://u:p@prometheus:9090", 1),
			`the URL holds a user or password`},
		"count over tries":   {canaryBase + errorsAnalysis + "        count: 5\n        tries: 2\n", `5 measurements in a row cannot pass within 2 tries`},
		"inconclusive":       {canaryBase + errorsAnalysis + "        inconclusive: maybe\n", `environments.staging.analysis.errors.inconclusive`},
		"step without range": {canaryBase + errorsAnalysis + "        step: 10s\n", `a step is the resolution of a range query: give range too`},
		"empty migrate":      {canaryBase + "    hooks:\n      migrate: {irreversible: true}\n", `environments.staging.hooks.migrate`},
	} {
		_, err := config.Parse("pushdeploy.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v\nwant an error containing %q", name, err, tc.want)
		}
	}
}

func TestCondition(t *testing.T) {
	for s, cases := range map[string]map[float64]bool{
		"< 0.05": {0.01: true, 0.05: false}, "<=1": {1: true, 1.1: false}, ">= 0.99": {0.99: true, 0.5: false},
		"> 100": {101: true, 100: false}, "== 0": {0: true, 1: false}, "!= 0": {1: true, 0: false},
	} {
		c, err := config.ParseCondition(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for v, want := range cases {
			if c.Met(v) != want {
				t.Errorf("%q met by %v: %v, want %v", s, v, !want, want)
			}
		}
	}
}
