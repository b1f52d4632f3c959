package balancer

import (
	"net/netip"
	"testing"

	"ballast/internal/backend"
)

func TestIPHashSameClientSameBackend(t *testing.T) {
	bs := newAddrBackends("test", 5)
	ih := NewIPHash(bs)
	other := NewIPHash(newAddrBackends("test", 5)) // another node, same list
	for _, ip := range randomIPs(1000) {
		r := &Request{ClientIP: ip}
		first := ih.Pick(r)
		for range 3 {
			if b := ih.Pick(r); b != first {
				t.Fatalf("%v: picked %s, then %s", r.ClientIP, first.Addr, b.Addr)
			}
		}
		if b := other.Pick(r); b.Addr != first.Addr {
			t.Fatalf("%v: another node picked %s, this one %s", r.ClientIP, b.Addr, first.Addr)
		}
	}
}

func TestIPHashIPv4MappedIsTheSameClient(t *testing.T) {
	ih := NewIPHash(newAddrBackends("test", 5))
	for _, v4 := range randomIPs(100) {
		if !v4.Is4() {
			continue
		}
		mapped := netip.AddrFrom16(v4.As16())
		if a, b := ih.Pick(&Request{ClientIP: v4}), ih.Pick(&Request{ClientIP: mapped}); a != b {
			t.Fatalf("%v → %s but %v → %s", v4, a.Addr, mapped, b.Addr)
		}
	}
}

func TestIPHashSpread(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"5 equal", []int{1, 1, 1, 1, 1}},
		{"weighted 1:2:3:2:2", []int{1, 2, 3, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.weights), tt.weights...)
			ih := NewIPHash(bs)
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			const clients = 10_000
			got := map[string]int{}
			for _, ip := range randomIPs(clients) {
				got[ih.Pick(&Request{ClientIP: ip}).Addr]++
			}
			for i, b := range bs {
				want := float64(clients*tt.weights[i]) / float64(sum)
				within(t, b.Addr+" clients", float64(got[b.Addr]), want, 0.15*want)
			}
		})
	}
}

func TestIPHashUnusableBackendOnlyItsClientsMove(t *testing.T) {
	bs := newAddrBackends("test", 5)
	ih := NewIPHash(bs)
	ips := randomIPs(10_000)
	before := make([]string, len(ips))
	for n, ip := range ips {
		before[n] = ih.Pick(&Request{ClientIP: ip}).Addr
	}
	gone := bs[2]
	down(bs, gone.Addr)
	movedTo := map[string]int{}
	for n, was := range before {
		r := &Request{ClientIP: ips[n]}
		now := ih.Pick(r)
		switch {
		case was != gone.Addr && now.Addr != was:
			t.Fatalf("client %v moved from %s to %s though its backend is up", r.ClientIP, was, now.Addr)
		case was == gone.Addr && now == gone:
			t.Fatalf("client %v still sent to the down backend", r.ClientIP)
		case was == gone.Addr:
			movedTo[now.Addr]++
			if again := ih.Pick(r); again != now {
				t.Fatalf("client %v: moved to %s, then %s", r.ClientIP, now.Addr, again.Addr)
			}
		}
	}
	// The displaced clients spread over the others, not onto one neighbour.
	if len(movedTo) != 4 {
		t.Errorf("displaced clients went to %v, want all 4 remaining backends", movedTo)
	}
	// And they come back when it recovers.
	gone.SetState(backend.StateUp)
	for n, was := range before {
		if now := ih.Pick(&Request{ClientIP: ips[n]}); now.Addr != was {
			t.Fatalf("after recovery client %v is on %s, was %s", ips[n], now.Addr, was)
		}
	}
}

func TestIPHashNoClientAddress(t *testing.T) {
	bs := newBackends(3)
	ih := NewIPHash(bs)
	if got, want := pickSeq(ih, &Request{}, 6), "abcabc"; got != want {
		t.Errorf("picks without client address = %s, want round robin %s", got, want)
	}
	down(bs, "a", "b", "c")
	if b := ih.Pick(&Request{ClientIP: randomIPs(1)[0]}); b != nil {
		t.Errorf("all down: picked %s", b.Addr)
	}
}

func BenchmarkIPHashPick(b *testing.B) { benchPick(b, NewIPHash(benchBackends())) }
