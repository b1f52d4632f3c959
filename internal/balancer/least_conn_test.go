package balancer

import "testing"

func TestLeastConnPrefersLeastLoaded(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int
		down     []string
		want     string
	}{
		{"clear minimum", []int{3, 1, 2}, nil, "b"},
		{"minimum last", []int{5, 4, 0}, nil, "c"},
		{"minimum down: next least", []int{3, 0, 2}, []string{"b"}, "c"},
		{"all down", []int{0, 0, 0}, []string{"a", "b", "c"}, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.inFlight))
			for i, n := range tt.inFlight {
				for range n {
					bs[i].Acquire()
				}
			}
			down(bs, tt.down...)
			lc := NewLeastConn(bs)
			// The answer does not depend on where the rotation starts.
			for range 2 * len(bs) {
				if got := pickSeq(lc, nil, 1); got != tt.want {
					t.Fatalf("pick = %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestLeastConnSkipsFullBackend(t *testing.T) {
	bs := newBackends(2)
	bs[0].SetMaxConns(2)
	bs[0].Acquire()
	bs[0].Acquire() // a is full
	for range 5 {
		bs[1].Acquire() // b has more in flight but no limit
	}
	if got := pickSeq(NewLeastConn(bs), nil, 4); got != "bbbb" {
		t.Errorf("picks = %s, want bbbb", got)
	}
}

func TestLeastConnTiesSpreadEvenly(t *testing.T) {
	for _, n := range []int{2, 3, 7, 10} {
		bs := newAddrBackends("test", n)
		for _, b := range bs { // equal, non-zero load
			b.Acquire()
		}
		const k = 100
		got := tally(NewLeastConn(bs), nil, n*k)
		for _, b := range bs {
			if got[b.Addr] != k {
				t.Errorf("n=%d: %s picked %d times, want exactly %d (all: %v)", n, b.Addr, got[b.Addr], k, got)
			}
		}
	}
}

// Requests that are held open keep the in-flight counts level.
func TestLeastConnBalancesHeldRequests(t *testing.T) {
	bs := newBackends(4)
	lc := NewLeastConn(bs)
	for range 400 {
		lc.Pick(nil).Acquire()
	}
	for _, b := range bs {
		if b.InFlight() != 100 {
			t.Errorf("%s has %d in flight, want 100", b.Addr, b.InFlight())
		}
	}
}

func BenchmarkLeastConnPick(b *testing.B) { benchPick(b, NewLeastConn(benchBackends())) }
