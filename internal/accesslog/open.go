package accesslog

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Open returns the writer for an access log output spec: "stdout" and
// "stderr" are the process's streams (their Close does nothing, so closing
// the log never closes them); anything else is a file path, opened for
// appending (O_APPEND|O_CREATE|O_WRONLY) and created with mode 0644. With
// O_APPEND every write lands at the end of the file even when another
// process (or logrotate's copytruncate) writes or truncates it too.
func Open(output string) (io.WriteCloser, error) {
	switch output {
	case "stdout":
		return stdStream{os.Stdout}, nil
	case "stderr":
		return stdStream{os.Stderr}, nil
	case "":
		return nil, errors.New("access log output: empty (want stdout, stderr or a file path)")
	}
	f, err := os.OpenFile(output, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log output: %w", err)
	}
	return f, nil
}

// stdStream is os.Stdout or os.Stderr with a Close that leaves it open.
type stdStream struct{ *os.File }

// Close does nothing: the stream belongs to the process.
func (stdStream) Close() error { return nil }
