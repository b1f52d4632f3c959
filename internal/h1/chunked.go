package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// MaxTrailerBytes bounds the trailer section a ChunkedReader keeps (field
// lines with their CRLFs); a longer one fails with ErrHeaderTooLarge.
const MaxTrailerBytes = 16 << 10

// maxChunkSizeDigits bounds chunk-size: 16 hex digits reach 2^64-1, and the
// value must fit an int64 besides.
const maxChunkSizeDigits = 16

type chunkState uint8

const (
	stateSize    chunkState = iota // next: chunk-size [ chunk-ext ] CRLF
	stateData                      // inside chunk-data; left bytes remain
	stateDataEnd                   // next: the CRLF after chunk-data
	stateTrailer                   // next: a trailer field line or the final CRLF
	stateDone                      // the body is complete
)

// ChunkedReader decodes a chunked message body (RFC 9112 §7.1) from a
// bufio.Reader, strictly: chunk-size is 1-16 hex digits fitting an int64 with
// nothing before it; chunk extensions (BWS ";" BWS token [ BWS "=" BWS
// ( token / quoted-string ) ]) are validated and dropped; every line ends in
// CRLF; chunk-data is followed by exactly CRLF; trailer fields obey the
// header-field rules. It never reads past the end of the body, so the next
// message on the connection stays in the bufio.Reader.
//
// A line longer than the bufio.Reader's buffer is malformed. Read returns
// io.EOF once the trailer section has been read, io.ErrUnexpectedEOF when the
// stream ends first, an error wrapping ErrMalformed for a violation, and
// passes other read errors through; errors are sticky. Decoding allocates
// nothing beyond growing the reused trailer buffer.
//
// The zero value is unusable; call Reset first. A ChunkedReader can be reused
// for any number of bodies.
type ChunkedReader struct {
	br    *bufio.Reader
	state chunkState
	left  int64  // bytes remaining in the current chunk's data
	trail []byte // the trailer section read so far; capacity reused
	err   error  // sticky
}

// Reset makes c decode a new body from br, keeping its trailer buffer.
func (c *ChunkedReader) Reset(br *bufio.Reader) {
	*c = ChunkedReader{br: br, trail: c.trail[:0]}
}

// Trailers returns the trailer section received after the last chunk: its
// field lines, each ending in CRLF, without the final empty line; nil if there
// were none. It is valid until the next Reset.
func (c *ChunkedReader) Trailers() []byte {
	if len(c.trail) == 0 {
		return nil
	}
	return c.trail
}

// Read decodes body bytes into p. Having copied some data it goes on only
// with what is already buffered (the next chunk header, its data), so it
// never blocks with data in hand.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for c.err == nil && n < len(p) {
		if c.state != stateData {
			if n > 0 && !c.buffered() {
				break
			}
			c.step()
			continue
		}
		if n > 0 && c.br.Buffered() == 0 {
			break // the data of the next chunk is not here yet
		}
		m := p[n:]
		if int64(len(m)) > c.left {
			m = m[:c.left]
		}
		k, err := c.br.Read(m)
		n += k
		c.left -= int64(k)
		if c.left == 0 {
			c.state = stateDataEnd
		}
		if err != nil {
			c.err = eofUnexpected(err)
		}
		if c.left > 0 {
			break // a short read: hand over what there is
		}
	}
	if n > 0 {
		return n, nil // any error, io.EOF included, comes with the next call
	}
	return 0, c.err
}

// buffered reports whether the next step can run on buffered bytes alone.
func (c *ChunkedReader) buffered() bool {
	switch c.state {
	case stateDone:
		return true
	case stateDataEnd:
		return c.br.Buffered() >= 2
	}
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// step consumes one chunk header, data terminator or trailer line.
func (c *ChunkedReader) step() {
	switch c.state {
	case stateSize:
		line, err := c.readLine()
		if err != nil {
			c.err = err
			return
		}
		size, err := parseChunkLine(line)
		if err != nil {
			c.err = err
			return
		}
		if size == 0 {
			c.state = stateTrailer
		} else {
			c.state, c.left = stateData, size
		}
	case stateDataEnd:
		b, err := c.br.Peek(2)
		switch {
		case len(b) == 2 && b[0] == '\r' && b[1] == '\n':
			_, _ = c.br.Discard(2) // cannot fail: the bytes are buffered
			c.state = stateSize
		case err != nil && len(b) < 2 && (len(b) == 0 || b[0] == '\r'):
			c.err = eofUnexpected(err)
		default:
			c.err = malformed("chunk data not followed by CRLF")
		}
	case stateTrailer:
		c.err = c.trailerLine()
	case stateDone:
		c.err = io.EOF
	}
}

// trailerLine reads one trailer line: a field, kept, or the final empty line.
func (c *ChunkedReader) trailerLine() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if len(line) == 0 {
		c.state = stateDone
		return nil
	}
	name, _, err := parseField(line)
	if err != nil {
		return fmt.Errorf("trailer: %w", err)
	}
	// Framing fields are forbidden in trailers (RFC 9110 §6.5.1); a
	// recipient that merged them into the header would be open to smuggling.
	if equalFold(name, "content-length") || equalFold(name, "transfer-encoding") {
		return malformed("framing field in trailer section")
	}
	if len(c.trail)+len(line)+2 > MaxTrailerBytes {
		return fmt.Errorf("%w: trailer section over %d bytes", ErrHeaderTooLarge, MaxTrailerBytes)
	}
	c.trail = append(c.trail, line...)
	c.trail = append(c.trail, '\r', '\n')
	return nil
}

// readLine returns the next CRLF-terminated line without its CRLF. The slice
// is valid until the next read from br.
func (c *ChunkedReader) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, malformed("chunk line too long")
	case err != nil:
		return nil, eofUnexpected(err)
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, malformed("bare LF in chunked body")
	}
	return line[:len(line)-2], nil
}

// eofUnexpected turns io.EOF inside a body into io.ErrUnexpectedEOF.
func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseChunkLine parses chunk-size [ chunk-ext ] (the line without CRLF).
func parseChunkLine(line []byte) (int64, error) {
	var size uint64
	i := 0
	for ; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		if i == maxChunkSizeDigits {
			return 0, malformed("chunk size too long")
		}
		size = size<<4 | uint64(d)
	}
	switch {
	case i == 0:
		return 0, malformed("invalid chunk size")
	case size > math.MaxInt64:
		return 0, malformed("chunk size overflows")
	case !validChunkExt(line[i:]):
		return 0, malformed("invalid chunk extension")
	}
	return int64(size), nil
}

// validChunkExt checks *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
// chunk-ext-val ] ) (RFC 9112 §7.1.1).
func validChunkExt(b []byte) bool {
	for i := 0; i < len(b); {
		if i = skipWS(b, i); i == len(b) || b[i] != ';' {
			return false
		}
		i = skipWS(b, i+1)
		s := i
		if i = skipToken(b, i); i == s {
			return false
		}
		j := skipWS(b, i)
		if j == len(b) || b[j] != '=' {
			continue // whitespace left at i must precede another ';'
		}
		i = skipWS(b, j+1)
		if i < len(b) && b[i] == '"' {
			if i = skipQuoted(b, i); i < 0 {
				return false
			}
			continue
		}
		s = i
		if i = skipToken(b, i); i == s {
			return false
		}
	}
	return true
}

// AppendChunk appends p to dst as one chunk: hex size, CRLF, data, CRLF. An
// empty p appends nothing, since a zero-size chunk would end the body.
func AppendChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = strconv.AppendUint(dst, uint64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}

// AppendLastChunk appends the end of a chunked body to dst: "0" CRLF, the
// trailer section, and the final CRLF. trailers is field lines as Trailers
// returns them; a missing CRLF after its last line is added. nil means none.
func AppendLastChunk(dst, trailers []byte) []byte {
	dst = append(dst, '0', '\r', '\n')
	if len(trailers) > 0 {
		dst = append(dst, trailers...)
		if !bytes.HasSuffix(trailers, []byte("\r\n")) {
			dst = append(dst, '\r', '\n')
		}
	}
	return append(dst, '\r', '\n')
}
