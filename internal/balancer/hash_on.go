package balancer

import (
	"fmt"
	"net/textproto"
	"strings"
)

// HashOn selects the part of a request that the hash algorithms key on; the
// zero HashOn is invalid. Build one with ParseHashOn.
type HashOn struct {
	src  hashSource
	name string // header (canonical), cookie or query parameter name
}

type hashSource uint8

const (
	hashNone hashSource = iota
	hashSourceIP
	hashPath
	hashURI
	hashHeader
	hashCookie
	hashQuery
)

// ParseHashOn parses a hash_on value: source_ip | path | uri | header:NAME |
// cookie:NAME | query:NAME. A header name is canonicalised here (x-user →
// X-User) so lookups need no work per request; cookie and query names are
// matched exactly as written.
func ParseHashOn(s string) (HashOn, error) {
	switch s {
	case "source_ip":
		return HashOn{src: hashSourceIP}, nil
	case "path":
		return HashOn{src: hashPath}, nil
	case "uri":
		return HashOn{src: hashURI}, nil
	}
	kind, name, found := strings.Cut(s, ":")
	if !found {
		return HashOn{}, fmt.Errorf("hash_on %q: want source_ip, path, uri, header:NAME, cookie:NAME or query:NAME", s)
	}
	if name == "" {
		return HashOn{}, fmt.Errorf("hash_on %q: empty name after %q", s, kind+":")
	}
	switch kind {
	case "header":
		if strings.ContainsAny(name, " \t\r\n:") {
			return HashOn{}, fmt.Errorf("hash_on %q: invalid header name", s)
		}
		return HashOn{src: hashHeader, name: textproto.CanonicalMIMEHeaderKey(name)}, nil
	case "cookie":
		if strings.ContainsAny(name, " \t\r\n;=\",") {
			return HashOn{}, fmt.Errorf("hash_on %q: invalid cookie name", s)
		}
		return HashOn{src: hashCookie, name: name}, nil
	case "query":
		if strings.ContainsAny(name, "&=# ") {
			return HashOn{}, fmt.Errorf("hash_on %q: invalid query parameter name", s)
		}
		return HashOn{src: hashQuery, name: name}, nil
	}
	return HashOn{}, fmt.Errorf("hash_on %q: unknown source %q (want header, cookie or query)", s, kind)
}

// Valid reports whether h was built by a successful ParseHashOn.
func (h HashOn) Valid() bool { return h.src != hashNone }

// String returns h in the config's syntax; "" for the zero HashOn.
func (h HashOn) String() string {
	switch h.src {
	case hashSourceIP:
		return "source_ip"
	case hashPath:
		return "path"
	case hashURI:
		return "uri"
	case hashHeader:
		return "header:" + h.name
	case hashCookie:
		return "cookie:" + h.name
	case hashQuery:
		return "query:" + h.name
	}
	return ""
}

// Hash returns the 64-bit hash of r's key, the same on every ballast node and
// every run, without allocating. ok is false when the key is absent: no client
// address, no such header, cookie or query parameter, or an empty value (which
// would send every such request to one backend). The path counts as "/" when
// empty; uri is the path followed by "?" and the raw query when there is one.
func (h HashOn) Hash(r *Request) (sum uint64, ok bool) {
	if r == nil {
		return 0, false
	}
	var key string
	switch h.src {
	case hashSourceIP:
		return hashIP(r)
	case hashPath, hashURI:
		f := fnvAdd(fnvOffset64, requestPath(r))
		if h.src == hashURI && r.RawQuery != "" {
			f = fnvAdd(fnvAdd(f, "?"), r.RawQuery)
		}
		return mix64(f), true
	case hashHeader:
		if r.Header == nil {
			return 0, false
		}
		key = r.Header.Get(h.name)
		ok = key != ""
	case hashCookie:
		if r.Header == nil {
			return 0, false
		}
		key, ok = cookieValue(r.Header.Get("Cookie"), h.name)
	case hashQuery:
		key, ok = queryValue(r.RawQuery, h.name)
	}
	if !ok {
		return 0, false
	}
	return hashString(key), true
}

func requestPath(r *Request) string {
	if r.Path == "" {
		return "/"
	}
	return r.Path
}
