package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// browserGET is a browser-like GET with 8 fields.
const browserGET = "GET /assets/app.js?v=3 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/index.html\r\n" +
	"Cookie: session=4f9a1c2e8b7d6a5f; theme=dark; consent=yes\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

// typicalResponse is an origin's response header block with 8 fields.
const typicalResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Mon, 24 Nov 2025 21:00:00 GMT\r\n" +
	"Content-Type: application/javascript; charset=utf-8\r\n" +
	"Content-Length: 48213\r\n" +
	"Cache-Control: public, max-age=31536000, immutable\r\n" +
	"ETag: \"5f3c-1a2b3c4d\"\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Server: origin/1.0\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

func BenchmarkParseRequest(b *testing.B) {
	buf := []byte(browserGET)
	var r Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(buf, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	buf := []byte(typicalResponse)
	method := []byte("GET")
	var r Response
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseResponse(buf, method, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkedReader decodes a 64 KiB body sent as 16 chunks of 4 KiB
// (with an extension on each) through a 32 KiB copy buffer.
func BenchmarkChunkedReader(b *testing.B) {
	var wire []byte
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for range 16 {
		wire = append(wire, "1000;ext=v\r\n"...)
		wire = append(wire, chunk...)
		wire = append(wire, "\r\n"...)
	}
	wire = AppendLastChunk(wire, nil)
	src := bytes.NewReader(wire)
	br := bufio.NewReaderSize(src, 32<<10)
	var c ChunkedReader
	p := make([]byte, 32<<10)
	b.SetBytes(16 * int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(wire)
		br.Reset(src)
		c.Reset(br)
		for {
			_, err := c.Read(p)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkHeaderLookup(b *testing.B) {
	var r Request
	if _, err := ParseRequest([]byte(browserGET), &r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r.Header("cookie") == nil {
			b.Fatal("no cookie")
		}
	}
}

// BenchmarkNetHTTPReadRequest is the baseline ParseRequest replaces:
// net/http's parser on the same request.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	buf := []byte(browserGET)
	src := bytes.NewReader(buf)
	br := bufio.NewReader(src)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(buf)
		br.Reset(src)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}
