package balancer

import (
	"strconv"
	"time"

	"ballast/internal/backend"
)

// Sticky adds cookie session persistence on top of any Balancer. The cookie
// carries the backend's ID (backend.StickyID), which every ballast node derives
// from the pool name and address alone, so a cookie set by one node is honoured
// by all of them without shared state. A value that names no backend of this
// pool — forged, stale, or from another pool — is ignored. Cost per pick: one
// map lookup, plus the inner balancer's pick when the cookie cannot be honoured.
//
// A cookie naming a backend that is not usable (down, draining, full) is not
// honoured: the client is moved to the inner balancer's pick and told so with
// a new cookie. A ramping backend (slow start) keeps its clients: the ramp
// applies to new sessions only, through the inner balancer, since moving a
// session away and back would cost it twice.
type Sticky struct {
	cookie string
	ttl    time.Duration
	inner  Balancer
	byID   map[string]*backend.Backend
}

// NewSticky returns sticky sessions over bs with the cookie named cookie, which
// lives for ttl (0 = until the browser closes). inner chooses a backend for
// clients that have no valid cookie; it should balance the same bs.
func NewSticky(cookie string, ttl time.Duration, inner Balancer, bs []*backend.Backend) *Sticky {
	byID := make(map[string]*backend.Backend, len(bs))
	for _, b := range bs {
		byID[b.ID] = b
	}
	return &Sticky{cookie: cookie, ttl: ttl, inner: inner, byID: byID}
}

// CookieName returns the name of the sticky cookie.
func (s *Sticky) CookieName() string { return s.cookie }

// TTL returns the cookie's lifetime, 0 for a session cookie.
func (s *Sticky) TTL() time.Duration { return s.ttl }

// Pick returns the backend named by r's sticky cookie when it is in this pool
// and usable, with setCookie false. Otherwise — no cookie, a value naming no
// backend of the pool, or a backend that is down or full — it asks the inner
// balancer and reports setCookie true when that found a backend, so the client
// is told its new one. It returns nil when no backend is usable.
func (s *Sticky) Pick(r *Request) (b *backend.Backend, setCookie bool) {
	if r != nil && r.Header != nil {
		if id, ok := cookieValue(r.Header.Get("Cookie"), s.cookie); ok {
			if b = s.byID[id]; b != nil && b.Usable() {
				return b, false
			}
		}
	}
	b = s.inner.Pick(r)
	return b, b != nil
}

// SetCookieValue returns the Set-Cookie header value that binds a client to b:
// "NAME=ID; Path=/; HttpOnly; SameSite=Lax", plus "; Max-Age=N" (seconds,
// rounded up) when the TTL is set. It allocates, but only for a new session.
func (s *Sticky) SetCookieValue(b *backend.Backend) string {
	v := s.cookie + "=" + b.ID + "; Path=/; HttpOnly; SameSite=Lax"
	if s.ttl > 0 {
		secs := int64((s.ttl + time.Second - 1) / time.Second)
		v += "; Max-Age=" + strconv.FormatInt(secs, 10)
	}
	return v
}
