package balancer

import (
	"fmt"
	"golang.org/x/net/http/httpguts"
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
	kind, name, named := strings.Cut(s, ":")
	var src hashSource
	switch kind {
	case "source_ip":
		src = hashSourceIP
	case "path":
		src = hashPath
	case "uri":
		src = hashURI
	case "header":
		src = hashHeader
	case "cookie":
		src = hashCookie
	case "query":
		src = hashQuery
	default:
		return HashOn{}, fmt.Errorf("invalid hash_on %q (valid: source_ip, path, uri, header:NAME, cookie:NAME, query:NAME)", s)
	}
	if src == hashSourceIP || src == hashPath || src == hashURI {
		if named {
			return HashOn{}, fmt.Errorf("hash_on %q takes no name", kind)
		}
		return HashOn{src: src}, nil
	}
	if name == "" {
		return HashOn{}, fmt.Errorf("hash_on %s needs a name, like %s:NAME", kind, kind)
	}
	switch {
	case src == hashQuery && strings.ContainsAny(name, "&=# "):
		return HashOn{}, fmt.Errorf("invalid query parameter name %q in hash_on", name)
	case src != hashQuery && !httpguts.ValidHeaderFieldName(name): // cookie names are tokens too
		return HashOn{}, fmt.Errorf("invalid %s name %q in hash_on", kind, name)
	}
	if src == hashHeader {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	return HashOn{src: src, name: name}, nil
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
