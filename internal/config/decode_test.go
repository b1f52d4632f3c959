package config

import (
	"ballast/internal/balancer"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// poolConfig is a small valid config around the body of pool "app", which it
// indents; the body's first line is line 7 of the file.
func poolConfig(body string) string {
	head := "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes: [{pool: app}]\npools:\n  app:\n"
	var b strings.Builder
	b.WriteString(head)
	for line := range strings.Lines(body) {
		b.WriteString("    " + line)
	}
	return b.String()
}

// backend0 is a pool body's first line when the test is about something else.
const backend0 = "backends: [{addr: \"127.0.0.1:9001\"}]\n"

// problemStrings parses data and returns its problems as strings.
func problemStrings(t *testing.T, data string) ([]string, *Config) {
	t.Helper()
	c, err := Parse("t.yaml", []byte(data))
	if err == nil {
		return nil, c
	}
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("error %v is not Problems", err)
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out, nil
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		body string // pool app's body, from line 7
		want []string
	}{
		{"list where a mapping goes", backend0 + "queue: [1]\n",
			[]string{"t.yaml:8: pools.app.queue: expected a mapping, got a list"}},
		{"mapping where a list goes", "backends: {addr: x}\n",
			[]string{"t.yaml:7: pools.app.backends: expected a list, got a mapping"}},
		{"yes is not a bool", "backends: [{addr: \"127.0.0.1:1\", backup: yes}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].backup: expected true or false, got "yes"`}},
		{"float is not an int", "backends: [{addr: \"127.0.0.1:1\", weight: 1.5}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].weight: expected an integer, got "1.5"`}},
		{"list where a string goes", backend0 + "algorithm: [a]\n",
			[]string{"t.yaml:8: pools.app.algorithm: expected a string, got a list"}},
		{"duration without unit", backend0 + "slow_start: 1.5\n",
			[]string{"t.yaml:8: pools.app.slow_start: duration 1.5 needs a unit, like 1.5s or 1.5ms"}},
		{"duration as mapping", backend0 + "slow_start: {s: 1}\n",
			[]string{"t.yaml:8: pools.app.slow_start: expected a duration, got a mapping"}},
		{"bare zero duration", backend0 + "slow_start: 0\n", nil},
		{"misspelt field", backend0 + "algoritm: p2c\n",
			[]string{`t.yaml:8: pools.app.algoritm: unknown field (did you mean "algorithm"?)`}},
		{"abbreviated field", backend0 + "health: {}\n",
			[]string{`t.yaml:8: pools.app.health: unknown field (did you mean "health_check"?)`}},
		{"duplicate field", backend0 + "algorithm: p2c\nalgorithm: random\n",
			[]string{"t.yaml:9: pools.app.algorithm: duplicate key (first at line 8)"}},
		{"non-string key", backend0 + "? [a]\n: 1\n",
			[]string{"t.yaml:8: pools.app: expected a string key, got a list"}},
		{"mapping merges itself", "backends: [&b {addr: \"127.0.0.1:1\", <<: *b}]\n",
			[]string{"t.yaml:7: pools.app.backends[0]: merge key << refers to a mapping that contains it"}},
		{"bad merge", backend0 + "<<: 5\n",
			[]string{`t.yaml:8: pools.app: merge key << needs a mapping or a list of mappings, got "5"`}},
		{"problems after a bad value are still found", "backends: 5\nalgorithm: nope\ntimeouts: {idle: -1s}\n", []string{
			`t.yaml:7: pools.app.backends: expected a list, got "5"`,
			`t.yaml:8: pools.app.algorithm: unknown algorithm "nope" (valid: ` + strings.Join(balancer.Algorithms, ", ") + `)`,
			"t.yaml:9: pools.app.timeouts.idle: idle must not be negative",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := problemStrings(t, poolConfig(tc.body))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestDefaultsExplicitZero guards the difference between an absent key (the
// default applies) and an explicit zero (kept, or reported by Validate).
func TestDefaultsExplicitZero(t *testing.T) {
	tests := []struct {
		name string
		body string
		get  func(*Pool) any
		want any
	}{
		{"absent weight is 1", backend0, func(p *Pool) any { return p.Backends[0].Weight }, 1},
		{"null weight is 1", "backends: [{addr: \"127.0.0.1:1\", weight: ~}]\n", func(p *Pool) any { return p.Backends[0].Weight }, 1},
		{"zero attempts stay 0", backend0 + "retries: {attempts: 0}\n", func(p *Pool) any { return p.Retries.Attempts }, 0},
		{"empty on stays empty", backend0 + "retries: {on: []}\n", func(p *Pool) any { return len(p.Retries.On) }, 0},
		{"false idempotent_only stays false", backend0 + "retries: {idempotent_only: false}\n",
			func(p *Pool) any { return *p.Retries.IdempotentOnly }, false},
		{"zero queue max stays 0", backend0 + "queue: {max: 0}\n", func(p *Pool) any { return p.Queue.Max }, 0},
		{"empty queue gets defaults", backend0 + "queue: {}\n", func(p *Pool) any { return *p.Queue },
			Queue{Max: DefaultQueueMax, Timeout: Duration(DefaultQueueTimeout), Admission: AdmissionAdaptive}},
		{"null health_check is absent", backend0 + "health_check:\n", func(p *Pool) any { return p.HealthCheck == nil }, true},
		{"zero max_ejected_percent stays 0", backend0 + "passive: {max_ejected_percent: 0}\n",
			func(p *Pool) any { return *p.Passive }, Passive{ConsecutiveFailures: 5, EjectFor: Duration(30 * time.Second)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probs, c := problemStrings(t, poolConfig(tc.body))
			if probs != nil {
				t.Fatalf("problems: %v", probs)
			}
			if got := tc.get(c.Pools["app"]); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeAnchorsAndMerge(t *testing.T) {
	data := `x-common: &common
  algorithm: least_conn
  timeouts: {connect: 1s}
listeners:
  - {name: web, listen: ":8080", routes: [{host: a.example, pool: a}, {pool: b}]}
pools:
  a:
    <<: *common
    x-note: extension keys are ignored
    backends: &be [{addr: "10.0.0.1:80"}]
  b:
    <<: [*common, {slow_start: 1s}, {slow_start: 2s}]
    algorithm: p2c
    backends: *be
`
	probs, c := problemStrings(t, data)
	if probs != nil {
		t.Fatalf("problems: %v", probs)
	}
	a, b := c.Pools["a"], c.Pools["b"]
	checks := []struct {
		name      string
		got, want any
	}{
		{"merged", a.Algorithm, "least_conn"},
		{"merged nested", a.Timeouts.Connect.D(), time.Second},
		{"written key wins over merged", b.Algorithm, "p2c"},
		{"earlier merge wins", b.SlowStart.D(), time.Second},
		{"alias", b.Backends[0].Addr, "10.0.0.1:80"},
		{"merged keys keep their own line", c.Line("pools.b.algorithm"), 13},
		{"merged keys get the anchor's line", c.Line("pools.a.timeouts.connect"), 3},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

// aliasBomb nests merge keys levels deep, each level merging the one below
// ten times: expanding it naively takes 10^levels steps.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("x:\n  l0: &l0 {addr: \"127.0.0.1:1\"}\n")
	for i := 1; i <= levels; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", ")
		fmt.Fprintf(&b, "  l%d: &l%d {<<: [%s]}\n", i, i, refs)
	}
	fmt.Fprintf(&b, "pools: {app: {backends: [*l%d]}}\n", levels)
	return b.String()
}

// TestAliasBomb guards against a small file that expands exponentially
// through aliases and merge keys ("billion laughs").
func TestAliasBomb(t *testing.T) {
	start := time.Now()
	probs, _ := problemStrings(t, aliasBomb(12))
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if !slices.ContainsFunc(probs, func(s string) bool { return strings.Contains(s, "config is too large") }) {
		t.Errorf("no size problem in %v", probs)
	}
}
