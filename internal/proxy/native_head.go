package proxy

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strconv"

	"ballast/internal/h1"
)

// Header names the native engine treats specially, matched case-insensitively.
var (
	hdrConnection      = []byte("Connection")
	hdrProxyConnection = []byte("Proxy-Connection")
	hdrKeepAlive       = []byte("Keep-Alive")
	hdrProxyAuthn      = []byte("Proxy-Authenticate")
	hdrProxyAuthz      = []byte("Proxy-Authorization")
	hdrTE              = []byte("Te")
	hdrTrailer         = []byte("Trailer")
	hdrTransferEnc     = []byte("Transfer-Encoding")
	hdrUpgrade         = []byte("Upgrade")
	hdrContentLength   = []byte("Content-Length")
	hdrHost            = []byte("Host")
	hdrXFF             = []byte("X-Forwarded-For")
	hdrXFProto         = []byte("X-Forwarded-Proto")
	hdrXFHost          = []byte("X-Forwarded-Host")
	hdrXRequestID      = []byte("X-Request-Id")
)

// isHopByHop reports the fields of RFC 9110 §7.6.1 that never cross a proxy
// (the framing fields, which the engine writes itself, included).
func isHopByHop(name []byte) bool {
	for _, h := range [...][]byte{hdrConnection, hdrProxyConnection, hdrKeepAlive, hdrProxyAuthn,
		hdrProxyAuthz, hdrTE, hdrTrailer, hdrTransferEnc, hdrUpgrade} {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// namedByConnection reports whether a Connection field of hs lists name.
func namedByConnection(hs []h1.Header, name []byte) bool {
	for i := range hs {
		if !bytes.EqualFold(hs[i].Name, hdrConnection) {
			continue
		}
		v := hs[i].Value
		for len(v) > 0 {
			var tok []byte
			if j := bytes.IndexByte(v, ','); j >= 0 {
				tok, v = v[:j], v[j+1:]
			} else {
				tok, v = v, nil
			}
			if bytes.EqualFold(bytes.Trim(tok, " \t"), name) {
				return true
			}
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v contains tok.
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var t []byte
		if j := bytes.IndexByte(v, ','); j >= 0 {
			t, v = v[:j], v[j+1:]
		} else {
			t, v = v, nil
		}
		if bytes.EqualFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

// headInfo is what appendRequestHead needs besides the parsed request.
type headInfo struct {
	clientIP    netip.Addr
	tls         bool
	backendAddr string // Host for a request that had none (HTTP/1.0)
	// requestID is the X-Request-Id to send when the client sent none (nil:
	// generate one); appendRequestHead sets it to the id it wrote, a view of
	// the head it returns.
	requestID []byte
}

// appendRequestHead appends the header block the backend gets: the request
// line in origin-form over HTTP/1.1, Host first, the client's end-to-end
// fields in their order and spelling, the framing the engine will write, the
// Upgrade handshake if the client asked for one, and the X-Forwarded-* and
// X-Request-Id fields (CONTRACT.md).
func appendRequestHead(dst []byte, req *h1.Request, hi *headInfo) []byte {
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.Path...)
	if req.Query != nil {
		dst = append(dst, '?')
		dst = append(dst, req.Query...)
	}
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	if req.Host != nil {
		dst = append(dst, req.Host...)
	} else {
		dst = append(dst, hi.backendAddr...)
	}
	dst = append(dst, "\r\n"...)

	var requestID []byte
	hasCL := false
	for i := range req.Headers {
		h := &req.Headers[i]
		switch {
		case bytes.EqualFold(h.Name, hdrTE):
			if hasToken(h.Value, []byte("trailers")) {
				dst = append(dst, "TE: trailers\r\n"...)
			}
			continue
		case bytes.EqualFold(h.Name, hdrHost), bytes.EqualFold(h.Name, hdrXFF),
			bytes.EqualFold(h.Name, hdrXFProto), bytes.EqualFold(h.Name, hdrXFHost):
			continue // written below
		case bytes.EqualFold(h.Name, hdrContentLength):
			hasCL = true
			continue
		case bytes.EqualFold(h.Name, hdrXRequestID):
			if requestID == nil && len(h.Value) > 0 && len(h.Value) <= maxRequestIDLen {
				requestID = h.Value
			}
			continue
		case isHopByHop(h.Name), namedByConnection(req.Headers, h.Name):
			continue
		}
		dst = appendField(dst, h.Name, h.Value)
	}

	switch {
	case req.Chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength > 0 || hasCL:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, req.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	if req.Upgrade != nil {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
		dst = append(dst, req.Upgrade...)
		dst = append(dst, "\r\n"...)
	}

	// X-Forwarded-For: every prior value, then the client's address.
	dst = append(dst, "X-Forwarded-For: "...)
	for i := range req.Headers {
		if h := &req.Headers[i]; bytes.EqualFold(h.Name, hdrXFF) && len(h.Value) > 0 {
			dst = append(dst, h.Value...)
			dst = append(dst, ", "...)
		}
	}
	if hi.clientIP.IsValid() {
		dst = hi.clientIP.AppendTo(dst)
	} else {
		dst = append(dst, "unknown"...)
	}
	if hi.tls {
		dst = append(dst, "\r\nX-Forwarded-Proto: https\r\n"...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: http\r\n"...)
	}
	if req.Host != nil {
		dst = appendField(dst, hdrXFHost, req.Host)
	}
	dst = append(dst, "X-Request-Id: "...)
	idStart := len(dst)
	switch {
	case requestID != nil:
		dst = append(dst, requestID...)
	case hi.requestID != nil:
		dst = append(dst, hi.requestID...)
	default:
		dst = appendRequestID(dst)
	}
	dst = append(dst, "\r\n\r\n"...)
	hi.requestID = dst[idStart : len(dst)-4]
	return dst
}

// respFraming is how the engine sends a response body to the client.
type respFraming int

const (
	frameNone    respFraming = iota // no body (HEAD, 1xx, 204, 304)
	frameLength                     // Content-Length
	frameChunked                    // Transfer-Encoding: chunked
	frameClose                      // until the connection closes (HTTP/1.0 clients)
)

// appendResponseHead appends the header block the client gets: the status
// line, the backend's end-to-end fields, the framing, a sticky cookie, and
// the connection's fate.
func appendResponseHead(dst []byte, resp *h1.Response, f respFraming, length int64, cookie string, keep bool, clientMinor int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(resp.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, resp.Reason...)
	dst = append(dst, "\r\n"...)
	for i := range resp.Headers {
		h := &resp.Headers[i]
		if bytes.EqualFold(h.Name, hdrContentLength) {
			if f == frameNone && resp.Status >= 200 {
				dst = appendField(dst, h.Name, h.Value) // HEAD and 304 keep the length of the entity
			}
			continue
		}
		if isHopByHop(h.Name) || namedByConnection(resp.Headers, h.Name) {
			continue
		}
		dst = appendField(dst, h.Name, h.Value)
	}
	switch f {
	case frameLength:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, length, 10)
		dst = append(dst, "\r\n"...)
	case frameChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if cookie != "" {
		dst = append(dst, "Set-Cookie: "...)
		dst = append(dst, cookie...)
		dst = append(dst, "\r\n"...)
	}
	switch {
	case !keep:
		dst = append(dst, "Connection: close\r\n"...)
	case clientMinor == 0:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendSwitchHead appends the 101 response of an upgrade: the backend's
// fields and the handshake's Connection and Upgrade.
func appendSwitchHead(dst []byte, resp *h1.Response) []byte {
	dst = append(dst, "HTTP/1.1 101 "...)
	dst = append(dst, resp.Reason...)
	dst = append(dst, "\r\n"...)
	for i := range resp.Headers {
		h := &resp.Headers[i]
		if isHopByHop(h.Name) || namedByConnection(resp.Headers, h.Name) {
			continue
		}
		dst = appendField(dst, h.Name, h.Value)
	}
	dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
	dst = append(dst, resp.Upgrade...)
	return append(dst, "\r\n\r\n"...)
}

func appendField(dst, name, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// appendRequestID appends 32 random lowercase hex digits (128 bits).
func appendRequestID(dst []byte) []byte {
	const hexDigits = "0123456789abcdef"
	for range 2 {
		v := rand.Uint64()
		for range 16 {
			dst = append(dst, hexDigits[v&0xf])
			v >>= 4
		}
	}
	return dst
}
