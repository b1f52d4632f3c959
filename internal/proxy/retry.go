package proxy

import (
	"errors"
	"sync/atomic"
	"syscall"
	"time"
)

// Failure kinds a retry policy can name (see config.Retry*).
type FailureKind uint8

const (
	// FailConnect: the backend could not be reached; nothing was sent.
	FailConnect FailureKind = iota
	// FailTimeout: the request was sent and no response header came in time.
	FailTimeout
	// FailReset: the request was sent and the backend closed or reset the
	// connection before a response header.
	FailReset
	// FailStatus: the backend answered with a status the policy retries.
	FailStatus
)

// RetryPolicy says which failed requests are tried again on another backend.
// The zero value retries connect failures only (the request was never sent).
type RetryPolicy struct {
	// Attempts is how many retries may follow the first try once a request
	// was sent. Connect failures may use at least minConnectRetries.
	Attempts int
	// OnTimeout, OnReset retry a sent request that timed out or was reset.
	OnTimeout, OnReset bool
	// statuses is a bit set of the 5xx codes retried (bit n = 500+n).
	statuses [2]uint64
	// IdempotentOnly limits retries of sent requests to idempotent methods
	// (RFC 9110 §9.2.2).
	IdempotentOnly bool
	// BudgetPercent caps retries of sent requests at this share of recent
	// requests (0: none are retried).
	BudgetPercent int
}

// RetryStatus adds a status code (500-599) to the codes the policy retries.
func (p *RetryPolicy) RetryStatus(code int) {
	if code >= 500 && code <= 599 {
		n := code - 500
		p.statuses[n/64] |= 1 << (n % 64)
	}
}

// retriesStatus reports whether the policy retries a response with code.
func (p *RetryPolicy) retriesStatus(code int) bool {
	if code < 500 || code > 599 {
		return false
	}
	n := code - 500
	return p.statuses[n/64]&(1<<(n%64)) != 0
}

// afterSend reports whether the policy ever retries a request that was sent.
func (p *RetryPolicy) afterSend() bool {
	return p.Attempts > 0 && (p.OnTimeout || p.OnReset || p.statuses != [2]uint64{})
}

// covers reports whether the policy retries a sent request that failed with kind.
func (p *RetryPolicy) covers(kind FailureKind, status int) bool {
	switch kind {
	case FailTimeout:
		return p.OnTimeout
	case FailReset:
		return p.OnReset
	case FailStatus:
		return p.retriesStatus(status)
	}
	return false
}

// minConnectRetries is how many other backends a request whose backend could
// not be reached always tries, whatever Attempts says: nothing was sent.
const minConnectRetries = 2

// MaxRetryBody is the largest request body kept for a retry. A request with
// a larger (or chunked) body is not retried once sent: holding big uploads in
// memory to replay them would let a few clients exhaust it.
const MaxRetryBody = 64 << 10

// Idempotent reports whether method is idempotent (RFC 9110 §9.2.2): sending
// it twice has the effect of sending it once.
func Idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// isRefused reports a connection the backend's host actively refused: nothing
// listens there, so the backend is out now, not after the next health check.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// Budget limits retries of sent requests to a share of recent traffic, so
// that retries cannot multiply the load on a pool that is already failing.
// Every request deposits percent/100 of a token, up to budgetCap tokens; each
// retry takes one. A trickle of budgetReserveEvery keeps a quiet pool able
// to retry. Lock-free: atomics only.
type Budget struct {
	milli     atomic.Int64 // tokens × 1000
	reserveAt atomic.Int64 // Unix nanoseconds the reserve was last used
}

const (
	// budgetCap bounds the tokens a long quiet spell can save up.
	budgetCap = 100 * 1000
	// budgetReserveEvery grants one retry this often even with no tokens
	// (5 per second), so that a pool with little traffic still retries.
	budgetReserveEvery = 200 * time.Millisecond
)

// NewBudget returns a budget holding budgetCap/10 tokens, so that a pool
// just started may retry.
func NewBudget() *Budget {
	b := &Budget{}
	b.milli.Store(budgetCap / 10)
	return b
}

// deposit credits one request at percent.
func (b *Budget) deposit(percent int) {
	if v := b.milli.Add(int64(percent) * 10); v > budgetCap {
		b.milli.CompareAndSwap(v, budgetCap)
	}
}

// withdraw takes one retry's token, reporting whether there was one.
func (b *Budget) withdraw(now time.Time) bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			break
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
	last := b.reserveAt.Load()
	ns := now.UnixNano()
	return ns-last >= int64(budgetReserveEvery) && b.reserveAt.CompareAndSwap(last, ns)
}

// refund returns a token taken for a retry that did not happen.
func (b *Budget) refund() { b.milli.Add(1000) }
