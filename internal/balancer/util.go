package balancer

import (
	"math/bits"
	"strings"
	"sync/atomic"

	"ballast/internal/backend"
)

// This file holds what several algorithms share: the usable-backend scan, the
// rotating start offset, weight reduction and the deterministic hash. Nothing
// here allocates on the request path.

// rotor is a wrapping position shared by concurrent picks: each call to next
// returns the following slot, so ties and fallbacks rotate instead of always
// landing on the first backend.
type rotor struct{ n atomic.Uint64 }

// next returns the next position in [0, n); n must be > 0.
func (r *rotor) next(n int) int { return int((r.n.Add(1) - 1) % uint64(n)) }

// skip moves the position on by k slots without picking them.
func (r *rotor) skip(k int) { r.n.Add(uint64(k)) }

// scanUsable returns the index of the first usable backend at or after start,
// wrapping around, or -1 when none is usable. O(n) worst case, O(1) when the
// backend at start is usable.
func scanUsable(bs []*backend.Backend, start int) int {
	n := len(bs)
	for i := range n {
		j := start + i
		if j >= n {
			j -= n
		}
		if bs[j].Usable() {
			return j
		}
	}
	return -1
}

// anyUsable reports whether at least one backend is usable.
func anyUsable(bs []*backend.Backend) bool { return scanUsable(bs, 0) >= 0 }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// maxWeightSum bounds the size of the tables built from weights (the smooth
// weighted schedule, the ip_hash table). Weights are 1..1000, so only a pool
// with many heavy backends reaches it; its weights are then scaled down
// proportionally, each staying at least 1.
const maxWeightSum = 1 << 14

// reducedWeights returns the backends' weights divided by their greatest
// common divisor (so 50:10:10 becomes 5:1:1) and scaled down when their sum
// would exceed limit, together with that sum.
func reducedWeights(bs []*backend.Backend, limit int) (ws []int, sum int) {
	ws = make([]int, len(bs))
	g := 0
	for i, b := range bs {
		ws[i] = b.Weight()
		g = gcd(g, ws[i])
		sum += ws[i]
	}
	if g > 1 {
		sum = 0
		for i := range ws {
			ws[i] /= g
			sum += ws[i]
		}
	}
	if sum > limit {
		scaled := 0
		for i := range ws {
			ws[i] = max(1, ws[i]*limit/sum)
			scaled += ws[i]
		}
		sum = scaled
	}
	return ws, sum
}

// The key hash: 64-bit FNV-1a fed incrementally, finished with the splitmix64
// mixer. FNV-1a alone spreads short, similar keys ("10.0.0.1", "10.0.0.2")
// poorly in its high bits; the mixer fixes that. It is fixed and seedless on
// purpose (not hash/maphash): every ballast node must map a key to the same
// backend.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvAdd feeds s into the running FNV-1a state h.
func fnvAdd[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix64 is splitmix64's finaliser: a bijection whose every output bit depends
// on every input bit.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// hashString is the finished hash of one string.
func hashString(s string) uint64 { return mix64(fnvAdd(fnvOffset64, s)) }

// hashIP is the finished hash of a client address, IPv4 and IPv4-mapped IPv6
// alike (both are hashed in their 16-byte form). ok is false for the zero Addr.
func hashIP(r *Request) (h uint64, ok bool) {
	if r == nil || !r.ClientIP.IsValid() {
		return 0, false
	}
	a := r.ClientIP.As16()
	return mix64(fnvAdd(fnvOffset64, a[:])), true
}

// reduce maps a uniformly distributed 64-bit x onto [0, n) without a division
// (Lemire's multiply-high).
func reduce(x uint64, n int) int {
	hi, _ := bits.Mul64(x, uint64(n))
	return int(hi)
}

// cookieValue finds the cookie named name in a Cookie header value
// ("a=1; b=2") without allocating: the pairs are split on ';', surrounding
// spaces and tabs trimmed, and a value in double quotes unquoted, as net/http
// does. The first pair with that exact name wins. ok is false when there is no
// such cookie or its value is empty.
func cookieValue(header, name string) (value string, ok bool) {
	for header != "" {
		var pair string
		if i := strings.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, ""
		}
		pair = strings.Trim(pair, " \t")
		eq := strings.IndexByte(pair, '=')
		if eq < 0 || pair[:eq] != name {
			continue
		}
		v := pair[eq+1:]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, v != ""
	}
	return "", false
}

// queryValue finds the parameter with the raw (still escaped) key name in a
// raw query string ("a=1&b=2") without allocating or unescaping. The first
// occurrence wins; a key without '=' has an empty value. ok is false when the
// key is absent or its value is empty.
func queryValue(query, name string) (value string, ok bool) {
	for query != "" {
		var pair string
		if i := strings.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, ""
		}
		key, v := pair, ""
		if eq := strings.IndexByte(pair, '='); eq >= 0 {
			key, v = pair[:eq], pair[eq+1:]
		}
		if key == name {
			return v, v != ""
		}
	}
	return "", false
}
