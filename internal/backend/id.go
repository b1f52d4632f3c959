package backend

import (
	"crypto/sha256"
	"encoding/hex"
)

// StickyID derives the identifier that sticky cookies carry for the backend addr
// of pool: 16 hex digits of SHA-256 over the pool name and address. It needs no
// server-side state, so every ballast node computes the same value for the same
// backend and honours a cookie another node set; it does not reveal the address;
// and a forged value can only ever match a backend that is in the pool.
func StickyID(pool, addr string) string {
	h := sha256.New()
	h.Write([]byte("ballast-sticky\x00"))
	h.Write([]byte(pool))
	h.Write([]byte{0})
	h.Write([]byte(addr))
	return hex.EncodeToString(h.Sum(nil)[:8])
}
