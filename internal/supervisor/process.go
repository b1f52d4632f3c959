package supervisor

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"syscall"
)

// process is one running instance of a command: its own process group, its
// output pumped into the log line by line.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // its exit status; read after done
}

// spawner starts processes from one goroutine locked to its OS thread for as
// long as the supervisor runs. Linux sends a child its parent-death signal
// when the *thread* that forked it exits, and Go may end a thread (one a
// goroutine left locked); forking from a thread that outlives every child
// makes the signal mean what it says: ballast itself died.
type spawner struct {
	reqs chan spawnReq
	wg   sync.WaitGroup
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	s.wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for r := range s.reqs {
			r.reply <- r.cmd.Start()
		}
	})
	return s
}

// close ends the spawner once nothing more will be started.
func (s *spawner) close() {
	close(s.reqs)
	s.wg.Wait()
}

// start runs argv in dir with env, in a new process group that gets SIGTERM
// if ballast dies (so an app server stops its own workers too), and pumps its
// stdout and stderr into log.
func (s *spawner) start(argv []string, dir string, env []string, log *slog.Logger) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// The instance writes into pipes of our own making, which ballast reads
	// to their end independently of the process's exit: workers that outlive
	// their parent keep their output, and an exit is seen at once.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	reply := make(chan error, 1)
	s.reqs <- spawnReq{cmd, reply}
	err = <-reply
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go pump(outR, log, "stdout")
	go pump(errR, log, "stderr")
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// maxLine bounds one logged line; a longer one is logged in pieces.
const maxLine = 16 << 10

// pump logs every line of r (an instance's stdout or stderr) until EOF. It
// always reads on, so that an instance never blocks on a full pipe.
func pump(r io.ReadCloser, log *slog.Logger, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if n := len(line); n > 0 {
			if line[n-1] == '\n' {
				line = line[:n-1]
				if n > 1 && line[n-2] == '\r' {
					line = line[:n-2]
				}
			}
			log.Info(string(line), "stream", stream)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// signal sends sig to the instance's whole process group (its workers too).
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		// Reaped: the group id may belong to someone else by now, unless
		// workers outlived their parent; reach those only.
		if sig == syscall.SIGKILL {
			_ = syscall.Kill(-p.pid, sig)
		}
		return
	default:
	}
	if err := syscall.Kill(-p.pid, sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// environ is ballast's environment with extra added (extra wins), sorted.
func environ(extra map[string]string) []string {
	env := os.Environ()
	if len(extra) == 0 {
		return env
	}
	out := env[:0:0]
	for _, kv := range env {
		k := kv
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				k = kv[:i]
				break
			}
		}
		if _, ok := extra[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
