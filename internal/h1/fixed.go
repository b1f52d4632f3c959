package h1

import "io"

// FixedReader reads a body framed by Content-Length: exactly n bytes of the
// underlying reader, then io.EOF. If the underlying reader ends first, Read
// returns io.ErrUnexpectedEOF: a truncated body must not pass for a whole one.
// It never reads past the n bytes, so the next message stays in the reader.
//
// The zero value is an empty body; Reset makes it reusable without allocating.
type FixedReader struct {
	r    io.Reader
	left int64
}

// Reset makes f read the next n bytes of r; n <= 0 is an empty body.
func (f *FixedReader) Reset(r io.Reader, n int64) {
	f.r, f.left = r, max(n, 0)
}

// Remaining returns how many body bytes are still unread.
func (f *FixedReader) Remaining() int64 { return f.left }

// Read reads up to len(p) body bytes.
func (f *FixedReader) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	if err == io.EOF && f.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
