// Package h1 reads and writes the HTTP/1.1 wire format (RFC 9112) for ballast's
// own proxy engine: strict, allocation-free parsing of request and response
// header blocks into reusable structs whose fields point into the caller's
// buffer, and validating readers/writers for message bodies.
//
// It is strict on purpose: a proxy that forwards an ambiguous message lets a
// client smuggle a second request past it. Anything RFC 9112 calls invalid,
// and anything two parsers could frame differently, is an error here.
package h1

import "errors"

// Header is one header field. Name and Value point into the parsed buffer;
// Value has no leading or trailing whitespace.
type Header struct {
	Name  []byte
	Value []byte
}

// Request is a parsed request header block. All slices point into the buffer
// given to ParseRequest and are valid only as long as it is.
type Request struct {
	Method  []byte
	Target  []byte   // request-target as sent: origin-form "/p?q", absolute-form, "*", or CONNECT's authority-form
	Path    []byte   // origin-form path (from Target; for absolute-form, its path part; "/" if empty); "*" for asterisk-form; nil for CONNECT
	Query   []byte   // raw query without '?' (empty after a bare "?"), or nil when Target has no '?'
	Minor   int      // HTTP/1.Minor: 0 or 1
	Host    []byte   // authority of an absolute-form or authority-form target, else the Host header; nil if none
	Headers []Header // every field in order, including Host, hop-by-hop ones too

	// Framing, decided by ParseRequest per RFC 9112 §6. A proxy forwards the
	// body as framed here and writes the framing fields itself (a single
	// Content-Length, not a received "5, 5" list).
	ContentLength int64 // -1 when chunked; 0 when no body
	Chunked       bool
	// KeepAlive reports whether the connection stays open after this exchange
	// (HTTP/1.1 without "Connection: close", or HTTP/1.0 with "keep-alive").
	KeepAlive bool
	// Expect100 reports "Expect: 100-continue" in an HTTP/1.1 request (an
	// HTTP/1.0 request's expectation is ignored, RFC 9110 §10.1.1).
	Expect100 bool
	// Upgrade is the first Upgrade field's value when Connection names
	// "upgrade" in an HTTP/1.1 request; nil otherwise or when it is empty.
	Upgrade []byte
}

// Response is a parsed response header block; slices point into the buffer.
type Response struct {
	Minor   int
	Status  int
	Reason  []byte
	Headers []Header

	// Framing per RFC 9112 §6.3, given the request method (see ParseResponse).
	// Bodyless is true for 1xx, 204, 304, responses to HEAD and 2xx
	// responses to CONNECT (a tunnel follows); ContentLength is then 0.
	Bodyless      bool
	Chunked       bool
	ContentLength int64 // -1 when unknown: chunked, or read until close
	// UntilClose reports a body delimited by the connection closing.
	UntilClose bool
	// Coded reports a transfer coding other than chunked (gzip, ...): the
	// body's bytes are not the content, and re-framing would lose the coding.
	Coded     bool
	KeepAlive bool
	Upgrade   []byte // Upgrade header value of a 101 whose Connection names "upgrade", else nil
}

// Parse errors. Every error from this package wraps ErrMalformed (so a proxy
// answers 400 to a client, 502 for a backend), except ErrIncomplete,
// ErrHeaderTooLarge and ErrUnsupportedTransferCoding, and except that the body
// readers return io.ErrUnexpectedEOF for a truncated body and pass the
// underlying reader's other errors through.
var (
	// ErrIncomplete: the buffer does not yet hold a whole header block.
	ErrIncomplete = errors.New("h1: incomplete header block")
	// ErrHeaderTooLarge: a limit of this package is exceeded (431): more than
	// MaxHeaders fields, or a trailer section over MaxTrailerBytes. Callers
	// enforce their own byte limit on the header block.
	ErrHeaderTooLarge = errors.New("h1: header block too large")
	// ErrMalformed: the message violates RFC 9112 or is ambiguous.
	ErrMalformed = errors.New("h1: malformed message")
	// ErrUnsupportedTransferCoding: a request's valid Transfer-Encoding list
	// applies codings before chunked, e.g. "gzip, chunked" (501).
	ErrUnsupportedTransferCoding = errors.New("h1: unsupported transfer coding")
)
