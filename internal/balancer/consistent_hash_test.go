package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"ballast/internal/backend"
)

// keyedRequests returns k requests whose keys, for the given hash_on source,
// are all different; everything else about them is the same.
func keyedRequests(on string, k int) []*Request {
	ips := randomIPs(k)
	rs := make([]*Request, k)
	for i := range rs {
		r := &Request{ClientIP: netip.MustParseAddr("192.0.2.1"), Path: "/", Header: header()}
		switch on {
		case "source_ip":
			r.ClientIP = ips[i]
		case "path":
			r.Path = fmt.Sprintf("/items/%d", i)
		case "uri":
			r.Path, r.RawQuery = "/search", fmt.Sprintf("q=%d&page=1", i)
		case "header:X-User":
			r.Header = header("X-User", fmt.Sprintf("user-%d", i))
		case "cookie:sid":
			r.Header = header("Cookie", fmt.Sprintf("theme=dark; sid=%016x", mix64(uint64(i))))
		case "query:user":
			r.RawQuery = fmt.Sprintf("lang=en&user=u%d", i)
		default:
			panic(on)
		}
		rs[i] = r
	}
	return rs
}

var hashSources = []string{"source_ip", "path", "uri", "header:X-User", "cookie:sid", "query:user"}

// owners returns the address each request is sent to.
func owners(b Balancer, rs []*Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = "-"
		if p := b.Pick(r); p != nil {
			out[i] = p.Addr
		}
	}
	return out
}

func TestConsistentHashSpread(t *testing.T) {
	for _, src := range hashSources {
		t.Run(src, func(t *testing.T) {
			bs := newAddrBackends("test", 10)
			rs := keyedRequests(src, 10_000)
			got := map[string]int{}
			for _, o := range owners(NewConsistentHash(bs, mustHashOn(t, src)), rs) {
				got[o]++
			}
			for _, b := range bs {
				within(t, b.Addr+" keys", float64(got[b.Addr]), 1000, 150)
			}
		})
	}
}

func TestConsistentHashAddRemoveMovesAboutOneNth(t *testing.T) {
	for _, src := range hashSources {
		t.Run(src, func(t *testing.T) {
			on := mustHashOn(t, src)
			rs := keyedRequests(src, 10_000)
			all := newAddrBackends("test", 11)
			ten := owners(NewConsistentHash(all[:10], on), rs)

			t.Run("add an 11th", func(t *testing.T) {
				eleven := owners(NewConsistentHash(all, on), rs)
				moved := 0
				for i := range rs {
					if eleven[i] == ten[i] {
						continue
					}
					moved++
					if eleven[i] != all[10].Addr {
						t.Fatalf("key %d moved from %s to %s, not to the new backend", i, ten[i], eleven[i])
					}
				}
				within(t, "moved share", float64(moved)/float64(len(rs)), 1.0/11, 0.05)
			})
			t.Run("remove one of 10", func(t *testing.T) {
				gone := all[3]
				nine := owners(NewConsistentHash(slices.Delete(slices.Clone(all[:10]), 3, 4), on), rs)
				moved := 0
				for i := range rs {
					if nine[i] == ten[i] {
						continue
					}
					moved++
					if ten[i] != gone.Addr {
						t.Fatalf("key %d moved from %s to %s though its backend stayed", i, ten[i], nine[i])
					}
				}
				within(t, "moved share", float64(moved)/float64(len(rs)), 1.0/10, 0.05)
			})
			t.Run("unusable owner", func(t *testing.T) {
				bs := newAddrBackends("test", 10)
				ch := NewConsistentHash(bs, on)
				gone := bs[6]
				gone.SetState(backend.StateDown)
				now := owners(ch, rs)
				movedTo := map[string]int{}
				for i := range rs {
					switch {
					case ten[i] == gone.Addr && now[i] == gone.Addr:
						t.Fatalf("key %d still sent to the down backend", i)
					case ten[i] == gone.Addr:
						movedTo[now[i]]++
					case now[i] != ten[i]:
						t.Fatalf("key %d moved from %s to %s though its backend is up", i, ten[i], now[i])
					}
				}
				// Its keys go to the next backends on the ring, spread over
				// several rather than piled onto one.
				if len(movedTo) < 5 {
					t.Errorf("the down backend's keys went to only %v", movedTo)
				}
				gone.SetState(backend.StateUp)
				if back := owners(ch, rs); !slices.Equal(back, ten) {
					t.Error("keys did not return to their owner when it recovered")
				}
			})
		})
	}
}

// Every ballast node must build the same ring, whatever the order it lists the
// backends in.
func TestConsistentHashIndependentOfListOrder(t *testing.T) {
	on := mustHashOn(t, "path")
	rs := keyedRequests("path", 2000)
	bs := newAddrBackends("test", 10)
	want := owners(NewConsistentHash(bs, on), rs)
	shuffled := newAddrBackends("test", 10)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := owners(NewConsistentHash(shuffled, on), rs); !slices.Equal(got, want) {
		t.Error("a ring built from the same backends in another order maps keys differently")
	}
}

func TestConsistentHashWeights(t *testing.T) {
	bs := newAddrBackends("test", 4)
	bs[0].SetWeight(3)
	rs := keyedRequests("path", 12_000)
	got := map[string]int{}
	for _, o := range owners(NewConsistentHash(bs, mustHashOn(t, "path")), rs) {
		got[o]++
	}
	// Weights 3:1:1:1 of 12000 keys: 6000, 2000, 2000, 2000.
	within(t, "weight-3 keys", float64(got[bs[0].Addr]), 6000, 6000*0.1)
	for _, b := range bs[1:] {
		within(t, b.Addr+" keys", float64(got[b.Addr]), 2000, 2000*0.15)
	}
}

func TestConsistentHashFallbacks(t *testing.T) {
	bs := newAddrBackends("test", 5)
	ch := NewConsistentHash(bs, mustHashOn(t, "header:X-User"))
	byIP := NewConsistentHash(bs, mustHashOn(t, "source_ip"))
	t.Run("absent key: client address", func(t *testing.T) {
		for _, ip := range randomIPs(200) {
			r := &Request{ClientIP: ip, Header: header("X-Other", "1")}
			if got, want := ch.Pick(r), byIP.Pick(r); got != want {
				t.Fatalf("%v without X-User → %s, want its source_ip owner %s", ip, got.Addr, want.Addr)
			}
		}
	})
	t.Run("no key, no address: round robin", func(t *testing.T) {
		got := tally(ch, &Request{}, 500)
		for _, b := range bs {
			if got[b.Addr] != 100 {
				t.Errorf("%s picked %d of 500 times, want 100", b.Addr, got[b.Addr])
			}
		}
	})
	t.Run("all down", func(t *testing.T) {
		down(bs, "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.5:8080")
		for _, r := range append(keyedRequests("header:X-User", 10), &Request{}) {
			if b := ch.Pick(r); b != nil {
				t.Fatalf("picked %s", b.Addr)
			}
		}
	})
}

func BenchmarkConsistentHashPick(b *testing.B) {
	on, err := ParseHashOn("header:X-User")
	if err != nil {
		b.Fatal(err)
	}
	benchPick(b, NewConsistentHash(benchBackends(), on))
}
