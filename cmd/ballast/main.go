// Command ballast is a load balancer and high-availability front end for HTTP
// and TCP services. See the README for the commands and the config reference.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"ballast/internal/config"
	"ballast/internal/server"
)

// version and commit are set at build time with
// -ldflags "-X main.version=… -X main.commit=…"; without them the commit comes
// from the Go build info when the build recorded it.
var (
	version = "dev"
	commit  = ""
)

const usage = `usage: ballast <command> [flags]

commands:
  run -c FILE        run the balancer until SIGTERM/SIGINT (SIGHUP reloads FILE,
                     SIGUSR2 upgrades to the binary now on disk; -pid-file PATH)
  validate -c FILE   check a config; print every problem as FILE:LINE: field: message
  status             print pools and backends with their state, from the admin API
                     (-c FILE, or -admin HOST:PORT [-token-file FILE])
  version            print version, commit and Go version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "ballast: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	rev, modified := commit, ""
	if bi, ok := debug.ReadBuildInfo(); ok && rev == "" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	return fmt.Sprintf("ballast %s commit %s%s %s %s/%s", version, rev, modified,
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// configFlags parses the flags shared by run and validate, and those extra
// defines (nil for none).
func configFlags(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (file string, logFormat string, logLevel slog.Level, ok bool) {
	fs := flag.NewFlagSet("ballast "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	fs.StringVar(&file, "c", "", "config file (YAML)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return "", "", 0, false
	}
	if file == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: ballast %s -c FILE\n", name)
		return "", "", 0, false
	}
	if err := logLevel.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "ballast: -log-level: %v\n", err)
		return "", "", 0, false
	}
	if logFormat != "text" && logFormat != "json" {
		fmt.Fprintf(stderr, "ballast: -log-format must be text or json\n")
		return "", "", 0, false
	}
	return file, logFormat, logLevel, true
}

// printProblems writes every config problem, one per line, and returns true if
// there was any.
func printProblems(w io.Writer, err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(w, p.String())
		}
		return
	}
	fmt.Fprintf(w, "ballast: %v\n", err)
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	file, _, _, ok := configFlags("validate", args, stderr, nil)
	if !ok {
		return 2
	}
	if _, err := config.Load(file); err != nil {
		printProblems(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", file)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	exe, exeErr := executablePath() // before anything could replace the binary
	var pidFile string
	file, format, level, ok := configFlags("run", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&pidFile, "pid-file", "", "write the process id to this file; removed on exit")
	})
	if !ok {
		return 2
	}
	inherited, readyPipe, err := takeInherited()
	if err != nil {
		fmt.Fprintf(stderr, "ballast: %v\n", err)
		return 1
	}
	cfg, err := config.Load(file)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	log := newLogger(stderr, format, level)
	warnUnimplemented(cfg, log)
	srv, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "ballast: %v\n", err)
		return 1
	}
	srv.Version = versionString()
	srv.Inherit(inherited)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// Once the first signal starts the drain, a second one takes the
		// default action: an impatient operator's second Ctrl-C ends ballast.
		<-ctx.Done()
		stop()
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, srv)
	up := &upgrader{exe: exe, exeErr: exeErr, args: append([]string{"run"}, args...),
		srv: srv, log: log, pidFile: pidFile}
	waitUpgrade := up.onSIGUSR2(ctx, stop)
	if readyPipe != nil {
		go reportReady(ctx, launchedReady(ctx, srv), readyPipe, log)
		// The process this one replaces holds the virtual IPs (if any) until
		// it exits; only then may this one's VRRP speaker start.
		srv.StartVRRPAfter(parentGone(ctx, os.Getppid()))
	}
	if pidFile != "" {
		if err := writePIDFile(pidFile); err != nil {
			fmt.Fprintf(stderr, "ballast: -pid-file: %v\n", err)
			return 1
		}
		defer removePIDFile(pidFile)
	}

	log.Info("ballast starting", "version", version, "config", file, "pid", os.Getpid())
	err = srv.Run(ctx)
	stop()
	waitUpgrade() // an upgrade in progress kills its new process first
	if err != nil {
		fmt.Fprintf(stderr, "ballast: %v\n", err)
		return 1
	}
	log.Info("ballast stopped")
	return 0
}

// reloadOnHUP reloads the config file on every SIGHUP until ctx is done. A
// config with problems is rejected whole: every problem is logged (by
// ReloadFile, as for the admin API's reload) and the running config keeps
// serving.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, srv *server.Server) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		srv.ReloadFile()
	}
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// warnUnimplemented names the config sections this version accepts (they are
// part of the contract) but does not act on yet, so nobody relies on them
// unknowingly.
func warnUnimplemented(cfg *config.Config, log *slog.Logger) {
	warn := func(path string) {
		log.Warn("config section accepted but not active in this version", "field", path)
	}
	if cfg.Cluster != nil && cfg.Cluster.Etcd != nil {
		warn("cluster.etcd")
	}
}
