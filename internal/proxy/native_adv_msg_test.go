package proxy

// The wire reader of the adversarial suite: HTTP/1.x messages parsed just
// enough to assert on them, keeping field names, order and framing as sent.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// advMsg is one HTTP/1.x message as seen on the wire.
type advMsg struct {
	raw      string      // the head, through its empty line
	line     string      // request-line or status-line
	fields   [][2]string // header fields in order, names as sent
	body     []byte
	trailers [][2]string
	bodyErr  error // nil when the body arrived complete
	bodyDone bool  // backend side: the body was read (whole or not)
	conn     int64 // backend side: which accepted connection (1-based)
}

func (m *advMsg) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m *advMsg) has(name string) bool { return len(m.all(name)) > 0 }

func (m *advMsg) all(name string) []string {
	var vs []string
	for _, f := range m.fields {
		if strings.EqualFold(f[0], name) {
			vs = append(vs, f[1])
		}
	}
	return vs
}

func (m *advMsg) trailer(name string) string {
	for _, f := range m.trailers {
		if strings.EqualFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

// status is a response's status code (0 if the line is not a status-line).
func (m *advMsg) status() int {
	if len(m.line) < 12 {
		return 0
	}
	s, _ := strconv.Atoi(m.line[9:12])
	return s
}

// target is a request's request-target.
func (m *advMsg) target() string {
	p := strings.Split(m.line, " ")
	if len(p) != 3 {
		return ""
	}
	return p[1]
}

func (m *advMsg) method() string { return strings.SplitN(m.line, " ", 2)[0] }

// advReadHead reads a header block: lines up to the empty one.
func advReadHead(br *bufio.Reader) (*advMsg, error) {
	m := &advMsg{}
	var raw strings.Builder
	for i := 0; ; i++ {
		if i > 1000 {
			return nil, errors.New("header block too long")
		}
		line, err := br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			if raw.Len() > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return nil, fmt.Errorf("bare LF in %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		switch {
		case line == "":
			m.raw = raw.String()
			return m, nil
		case i == 0:
			m.line = line
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("bad field line %q", line)
			}
			m.fields = append(m.fields, [2]string{name, strings.TrimSpace(value)})
		}
	}
}

// advReadChunked decodes a chunked body and its trailers.
func advReadChunked(br *bufio.Reader) (body []byte, trailers [][2]string, err error) {
	for i := 0; ; i++ {
		if i > 1<<20 {
			return body, nil, errors.New("too many chunks")
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return body, nil, io.ErrUnexpectedEOF
		}
		sz, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil {
			return body, nil, fmt.Errorf("bad chunk line %q", line)
		}
		if n == 0 {
			break
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return body[:start], nil, io.ErrUnexpectedEOF
		}
		var crlf [2]byte
		if _, err := io.ReadFull(br, crlf[:]); err != nil || string(crlf[:]) != "\r\n" {
			return body, nil, fmt.Errorf("chunk data not followed by CRLF: %q %v", crlf, err)
		}
	}
	for range 100 {
		line, err := br.ReadString('\n')
		if err != nil {
			return body, trailers, io.ErrUnexpectedEOF
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			return body, trailers, nil
		}
		name, value, _ := strings.Cut(line, ":")
		trailers = append(trailers, [2]string{name, strings.TrimSpace(value)})
	}
	return body, trailers, errors.New("too many trailer fields")
}

// advReadBody reads a body framed as m's fields say; untilEOF selects a body
// delimited by the connection closing when there is no framing field.
func advReadBody(br *bufio.Reader, m *advMsg, untilEOF bool) {
	switch te := strings.ToLower(m.get("Transfer-Encoding")); {
	case strings.HasSuffix(te, "chunked"):
		m.body, m.trailers, m.bodyErr = advReadChunked(br)
	case m.has("Content-Length"):
		n, err := strconv.ParseInt(m.get("Content-Length"), 10, 64)
		if err != nil {
			m.bodyErr = err
			return
		}
		m.body = make([]byte, n)
		k, err := io.ReadFull(br, m.body)
		m.body, m.bodyErr = m.body[:k], err
	case untilEOF:
		m.body, m.bodyErr = io.ReadAll(br)
	}
}

// advReadResponse reads one response to a request with the given method.
func advReadResponse(br *bufio.Reader, method string) (*advMsg, error) {
	m, err := advReadHead(br)
	if err != nil {
		return nil, err
	}
	st := m.status()
	if method == "HEAD" || st < 200 || st == 204 || st == 304 {
		return m, nil
	}
	advReadBody(br, m, true)
	return m, m.bodyErr
}
