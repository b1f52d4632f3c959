package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// decodeAll reads a whole chunked body through a ChunkedReader, step bytes
// per Read, and returns the data, the trailers and the final error (nil on
// a clean io.EOF).
func decodeAll(in string, step int, wrap func(io.Reader) io.Reader) (data, trailers string, rest string, err error) {
	var src io.Reader = strings.NewReader(in)
	if wrap != nil {
		src = wrap(src)
	}
	br := bufio.NewReaderSize(src, 64)
	var c ChunkedReader
	c.Reset(br)
	var out bytes.Buffer
	p := make([]byte, step)
	for {
		n, err := c.Read(p)
		out.Write(p[:n])
		if err == io.EOF {
			tail, _ := io.ReadAll(br)
			return out.String(), string(c.Trailers()), string(tail), nil
		}
		if err != nil {
			return out.String(), "", "", err
		}
	}
}

func TestChunkedReaderValid(t *testing.T) {
	tests := []struct {
		name, in, data, trailers string
	}{
		{"empty body", "0\r\n\r\n", "", ""},
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", ""},
		{"several chunks", "3\r\nabc\r\n1\r\nd\r\n6\r\nefghij\r\n0\r\n\r\n", "abcdefghij", ""},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", ""},
		{"leading zeros", "000a\r\n0123456789\r\n0000\r\n\r\n", "0123456789", ""},
		{"16 digits", "0000000000000003\r\nabc\r\n0\r\n\r\n", "abc", ""},
		{"extension", "3;name\r\nabc\r\n0;last=yes\r\n\r\n", "abc", ""},
		{"extension with BWS", "3 \t; a = b ;c;d=\"q\\\"uo;ted\"\r\nabc\r\n0\r\n\r\n", "abc", ""},
		{"data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", ""},
		{"binary data", "3\r\n\x00\xff\n\r\n0\r\n\r\n", "\x00\xff\n", ""},
		{"trailers", "3\r\nabc\r\n0\r\nX-Sum: 123\r\nX-Empty:\r\n\r\n", "abc", "X-Sum: 123\r\nX-Empty:\r\n"},
		{"trailer with OWS kept raw", "0\r\nX-A:  1 \r\n\r\n", "", "X-A:  1 \r\n"},
	}
	for _, tc := range tests {
		for _, step := range []int{1, 3, 4096} {
			t.Run(tc.name, func(t *testing.T) {
				for _, wrap := range []func(io.Reader) io.Reader{nil, iotest.OneByteReader, iotest.DataErrReader} {
					data, tr, rest, err := decodeAll(tc.in+"NEXT", step, wrap)
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					if data != tc.data || tr != tc.trailers {
						t.Errorf("step %d: data %q trailers %q, want %q %q", step, data, tr, tc.data, tc.trailers)
					}
					if rest != "NEXT" {
						t.Errorf("step %d: left %q in the reader, want the next message %q", step, rest, "NEXT")
					}
				}
			})
		}
	}
}

var chunkedProbes = []struct {
	name string
	in   string
	want error
}{
	{"bad hex", "g\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"empty size", "\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"negative", "-3\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"plus sign", "+3\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"leading space", " 3\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"trailing space without extension", "3 \r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"17 digits", "00000000000000003\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"overflow int64", "8000000000000000\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"overflow uint64", "fffffffffffffffff\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"LF-only size line", "3\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"CR inside size line", "3\r;a\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"missing CRLF after data", "3\r\nabcd\r\n0\r\n\r\n", ErrMalformed},
	{"two other bytes after data", "3\r\nabcXY1\r\nd\r\n0\r\n\r\n", ErrMalformed},
	{"LF only after data", "3\r\nabc\n0\r\n\r\n", ErrMalformed},
	{"CR only after data", "3\r\nabc\r0\r\n\r\n", ErrMalformed},
	{"short data", "5\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"LF-only last chunk", "0\n\r\n", ErrMalformed},
	{"LF-only final line", "0\r\n\n", ErrMalformed},
	{"extension semicolon alone", "3;\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension without name", "3;=x\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension empty value", "3;a=\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension unterminated quote", "3;a=\"x\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension two values", "3;a=b c\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension junk", "3 junk\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension trailing space", "3;a \r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension NUL", "3;a\x00\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"extension DEL in quote", "3;a=\"\x7f\"\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"trailer without colon", "0\r\nX-A 1\r\n\r\n", ErrMalformed},
	{"trailer space before colon", "0\r\nX-A : 1\r\n\r\n", ErrMalformed},
	{"trailer obs-fold", "0\r\nX-A: 1\r\n 2\r\n\r\n", ErrMalformed},
	{"trailer NUL", "0\r\nX-A: \x00\r\n\r\n", ErrMalformed},
	{"trailer Content-Length", "0\r\nContent-Length: 5\r\n\r\n", ErrMalformed},
	{"trailer Transfer-Encoding", "0\r\ntransfer-encoding: chunked\r\n\r\n", ErrMalformed},
	{"trailer section too large", "0\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 50)+"\r\n", MaxTrailerBytes/59+1) + "\r\n", ErrHeaderTooLarge},
	{"line longer than the buffer", "3;" + strings.Repeat("a", 100) + "\r\nabc\r\n0\r\n\r\n", ErrMalformed},
	{"EOF at start", "", io.ErrUnexpectedEOF},
	{"EOF in size line", "3", io.ErrUnexpectedEOF},
	{"EOF after size CR", "3\r", io.ErrUnexpectedEOF},
	{"EOF in data", "5\r\nab", io.ErrUnexpectedEOF},
	{"EOF before data CRLF", "3\r\nabc", io.ErrUnexpectedEOF},
	{"EOF inside data CRLF", "3\r\nabc\r", io.ErrUnexpectedEOF},
	{"EOF before last chunk", "3\r\nabc\r\n", io.ErrUnexpectedEOF},
	{"EOF in trailers", "0\r\nX-A: 1\r\n", io.ErrUnexpectedEOF},
	{"EOF before final CRLF", "0\r\n", io.ErrUnexpectedEOF},
}

func TestChunkedReaderProbes(t *testing.T) {
	for _, tc := range chunkedProbes {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{1, 4096} {
				_, _, _, err := decodeAll(tc.in, step, nil)
				if !errors.Is(err, tc.want) {
					t.Fatalf("step %d: err = %v, want %v", step, err, tc.want)
				}
			}
		})
	}
}

// TestChunkedReaderSticky checks that an error stays: a proxy must not read
// on after a framing error and treat the rest as a new message.
func TestChunkedReaderSticky(t *testing.T) {
	var c ChunkedReader
	c.Reset(bufio.NewReader(strings.NewReader("3\r\nabcX\r\n0\r\n\r\n")))
	p := make([]byte, 10)
	var err error
	for err == nil {
		_, err = c.Read(p)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	if n, err2 := c.Read(p); n != 0 || err2 != err {
		t.Errorf("second Read = %d, %v; want 0, %v", n, err2, err)
	}
}

// TestChunkedReaderNoBlockWithData checks that Read hands over the data of a
// chunk without waiting for the next chunk header, which may be slow to come
// (a streaming response).
func TestChunkedReaderNoBlockWithData(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	// The second chunk's header arrives, its data does not.
	go func() { _, _ = pw.Write([]byte("5\r\nhello\r\n5\r\n")) }()
	var c ChunkedReader
	c.Reset(bufio.NewReader(pr))
	done := make(chan string, 1)
	go func() {
		p := make([]byte, 64)
		n, _ := c.Read(p)
		done <- string(p[:n])
	}()
	select {
	case got := <-done:
		if got != "hello" {
			t.Errorf("Read = %q, want %q", got, "hello")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read blocked waiting for the next chunk header")
	}
}

func TestAppendChunk(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "1\r\na\r\n"},
		{strings.Repeat("x", 255), "ff\r\n" + strings.Repeat("x", 255) + "\r\n"},
		{strings.Repeat("x", 4096), "1000\r\n" + strings.Repeat("x", 4096) + "\r\n"},
	}
	for _, tc := range tests {
		if got := string(AppendChunk([]byte("pre"), []byte(tc.in))); got != "pre"+tc.want {
			t.Errorf("AppendChunk(%d bytes) = %.20q…, want %.20q…", len(tc.in), got, "pre"+tc.want)
		}
	}
}

func TestAppendLastChunk(t *testing.T) {
	tests := []struct{ trailers, want string }{
		{"", "0\r\n\r\n"},
		{"X-A: 1\r\n", "0\r\nX-A: 1\r\n\r\n"},
		{"X-A: 1\r\nX-B: 2", "0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"},
	}
	for _, tc := range tests {
		if got := string(AppendLastChunk(nil, []byte(tc.trailers))); got != tc.want {
			t.Errorf("AppendLastChunk(%q) = %q, want %q", tc.trailers, got, tc.want)
		}
	}
}

// TestChunkedRoundTrip encodes with AppendChunk/AppendLastChunk and decodes
// with ChunkedReader, trailers included.
func TestChunkedRoundTrip(t *testing.T) {
	var wire []byte
	var want bytes.Buffer
	for i := range 50 {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, i*37)
		want.Write(p)
		wire = AppendChunk(wire, p)
	}
	wire = AppendLastChunk(wire, []byte("X-Checksum: abc\r\n"))
	data, tr, _, err := decodeAll(string(wire), 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if data != want.String() || tr != "X-Checksum: abc\r\n" {
		t.Errorf("round trip lost data or trailers (data %d bytes, want %d; trailers %q)", len(data), want.Len(), tr)
	}
}

func TestChunkedReaderAllocs(t *testing.T) {
	var wire []byte
	for range 16 {
		wire = AppendChunk(wire, bytes.Repeat([]byte("z"), 1000))
	}
	wire = AppendLastChunk(wire, []byte("X-T: 1\r\n"))
	src := bytes.NewReader(wire)
	br := bufio.NewReader(src)
	var c ChunkedReader
	p := make([]byte, 512)
	run := func() {
		src.Reset(wire)
		br.Reset(src)
		c.Reset(br)
		for {
			_, err := c.Read(p)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	run() // grow the trailer buffer once
	if a := testing.AllocsPerRun(50, run); a != 0 {
		t.Errorf("ChunkedReader allocates %v times per body, want 0", a)
	}
	dst := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(50, func() {
		dst = AppendLastChunk(AppendChunk(dst[:0], wire[:100]), nil)
	}); a != 0 {
		t.Errorf("AppendChunk/AppendLastChunk allocate %v times, want 0", a)
	}
}
