package balancer

import (
	"testing"

	"ballast/internal/backend"
)

func TestRoundRobinRotation(t *testing.T) {
	tests := []struct {
		name string
		down []string
		want string
	}{
		{"all up", nil, "abcabcabcabc"},
		{"middle down: no double share for its successor", []string{"b"}, "acacacacacac"},
		{"first down", []string{"a"}, "bcbcbcbcbcbc"},
		{"last down", []string{"c"}, "abababababab"},
		{"only one up", []string{"a", "c"}, "bbbbbbbbbbbb"},
		{"none up", []string{"a", "b", "c"}, "------------"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(3)
			down(bs, tt.down...)
			if got := pickSeq(NewRoundRobin(bs), nil, len(tt.want)); got != tt.want {
				t.Errorf("picks = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRoundRobinSkipsFullBackend(t *testing.T) {
	bs := newBackends(3)
	bs[0].SetMaxConns(1)
	bs[0].Acquire()
	if got, want := pickSeq(NewRoundRobin(bs), nil, 6), "bcbcbc"; got != want {
		t.Errorf("picks = %s, want %s", got, want)
	}
}

func TestRoundRobinRecovery(t *testing.T) {
	bs := newBackends(3)
	rr := NewRoundRobin(bs)
	bs[1].SetState(backend.StateDown)
	if got, want := pickSeq(rr, nil, 4), "acac"; got != want {
		t.Fatalf("while b is down: picks = %s, want %s", got, want)
	}
	bs[1].SetState(backend.StateUp)
	if got, want := pickSeq(rr, nil, 6), "abcabc"; got != want {
		t.Errorf("after b is back: picks = %s, want %s", got, want)
	}
}

func TestRoundRobinEmpty(t *testing.T) {
	if b := NewRoundRobin(nil).Pick(nil); b != nil {
		t.Errorf("Pick on no backends = %v, want nil", b.Addr)
	}
}

func BenchmarkRoundRobinPick(b *testing.B) { benchPick(b, NewRoundRobin(benchBackends())) }
