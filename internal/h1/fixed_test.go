package h1

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestFixedReader(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		n       int64
		want    string
		wantErr error // from io.ReadAll; nil for a clean EOF
		rest    string
	}{
		{"exact", "hello", 5, "hello", nil, ""},
		{"leaves the next message", "helloGET /", 5, "hello", nil, "GET /"},
		{"empty body", "GET /", 0, "", nil, "GET /"},
		{"negative is empty", "abc", -1, "", nil, "abc"},
		{"truncated", "hel", 5, "hel", io.ErrUnexpectedEOF, ""},
		{"nothing at all", "", 5, "", io.ErrUnexpectedEOF, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wraps := []struct {
				wrap  func(io.Reader) io.Reader
				exact bool // reads no more from the source than asked
			}{
				{func(r io.Reader) io.Reader { return r }, true},
				{iotest.OneByteReader, true},
				{iotest.DataErrReader, false}, // reads ahead to return EOF with data
			}
			for _, w := range wraps {
				src := strings.NewReader(tc.src)
				var f FixedReader
				f.Reset(w.wrap(src), tc.n)
				got, err := io.ReadAll(&f)
				if string(got) != tc.want || !errors.Is(err, tc.wantErr) {
					t.Errorf("ReadAll = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
				}
				if rest, _ := io.ReadAll(src); w.exact && string(rest) != tc.rest {
					t.Errorf("left %q in the source, want %q", rest, tc.rest)
				}
			}
		})
	}
}

func TestFixedReaderRemainingAndReuse(t *testing.T) {
	var f FixedReader
	if n, err := f.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("zero value Read = %d, %v; want 0, EOF", n, err)
	}
	src := strings.NewReader("abcdef")
	f.Reset(src, 4)
	p := make([]byte, 3)
	if n, err := f.Read(p); n != 3 || err != nil || f.Remaining() != 1 {
		t.Fatalf("Read = %d, %v, Remaining %d; want 3, nil, 1", n, err, f.Remaining())
	}
	if n, _ := f.Read(p); n != 1 || string(p[:1]) != "d" {
		t.Fatalf("second Read = %d %q, want 1 \"d\"", n, p[:n])
	}
	if n, err := f.Read(p); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, EOF", n, err)
	}
	f.Reset(src, 2)
	if got, err := io.ReadAll(&f); string(got) != "ef" || err != nil {
		t.Errorf("after Reset ReadAll = %q, %v; want \"ef\", nil", got, err)
	}
	if a := testing.AllocsPerRun(100, func() {
		src.Reset("abcdef")
		f.Reset(src, 6)
		for {
			if _, err := f.Read(p); err != nil {
				break
			}
		}
	}); a != 0 {
		t.Errorf("FixedReader allocates %v times, want 0", a)
	}
}
