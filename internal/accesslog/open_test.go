package accesslog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOpenFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one\n", "two\n"} {
		w, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old\none\ntwo\n" {
		t.Errorf("file = %q, want the old line kept and both new ones appended", got)
	}
}

func TestOpenCreatesWith0644(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The umask may only take permissions away.
	if perm := fi.Mode().Perm(); perm&^0o644 != 0 || perm&0o600 != 0o600 {
		t.Errorf("mode %v, want 0644 less the umask", perm)
	}
}

func TestOpenStdStreamsCloseLeavesThemOpen(t *testing.T) {
	for _, name := range []string{"stdout", "stderr"} {
		w, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("%s: Close = %v", name, err)
		}
	}
	for _, f := range []*os.File{os.Stdout, os.Stderr} {
		if _, err := f.Stat(); err != nil {
			t.Errorf("%s after Close: %v", f.Name(), err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, spec := range []string{"", filepath.Join(t.TempDir(), "missing", "dir", "access.log")} {
		if w, err := Open(spec); err == nil {
			w.Close()
			t.Errorf("Open(%q) succeeded, want an error", spec)
		}
	}
}
