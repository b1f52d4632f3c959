package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"ballast/internal/admin"
	"ballast/internal/config"
)

// defaultAdmin is where status looks for the admin API without -admin or -c.
const defaultAdmin = "127.0.0.1:9901"

// cmdStatus prints the running ballast's pools and backends as a table, from
// the admin API.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ballast status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", "", "admin API address host:port (default: admin.listen of -c, else "+defaultAdmin+")")
	file := fs.String("c", "", "config file: read admin.listen and admin.token_file from it")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default: admin.token_file of -c)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: ballast status [-admin HOST:PORT] [-c FILE] [-token-file FILE]")
		return 2
	}
	if *file != "" {
		cfg, err := config.Load(*file)
		if err != nil {
			printProblems(stderr, err)
			return 1
		}
		if cfg.Admin == nil {
			fmt.Fprintf(stderr, "ballast: %s has no admin section: the admin API is off\n", *file)
			return 1
		}
		if *addr == "" {
			*addr = cfg.Admin.Listen
		}
		if *tokenFile == "" {
			*tokenFile = cfg.Admin.TokenFile
		}
	}
	if *addr == "" {
		*addr = defaultAdmin
	}
	req, err := http.NewRequest("GET", "http://"+*addr+"/api/v1/pools", nil)
	if err != nil {
		fmt.Fprintf(stderr, "ballast: -admin %q: %v\n", *addr, err)
		return 2
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "ballast: %v\n", err)
			return 1
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "ballast: cannot reach the admin API at %s: %v\n", *addr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		fmt.Fprintf(stderr, "ballast: admin API at %s: %s: %s\n", *addr, resp.Status, e.Error)
		return 1
	}
	var st admin.State
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "ballast: admin API at %s: unexpected answer: %v\n", *addr, err)
		return 1
	}
	printStatus(stdout, &st)
	return 0
}

// printStatus writes the state as a table, a block per pool.
func printStatus(w io.Writer, st *admin.State) {
	fmt.Fprintf(w, "%s, config %s, up since %s\n\n", st.Version, shortHash(st.ConfigHash), st.Started.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tBACKEND\tSTATE\tWEIGHT\tIN FLIGHT\tREQUESTS\tFAILURES\tLATENCY\tLAST CHECK ERROR")
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			inflight := fmt.Sprint(b.InFlight)
			if b.MaxConns > 0 {
				inflight += fmt.Sprintf("/%d", b.MaxConns)
			}
			state := b.State
			if b.Backup {
				state += " (backup)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%.1fms\t%s\n", p.Name, b.Addr, state, b.Weight,
				inflight, b.Requests, b.Failures, b.LatencyMS, b.LastCheckError)
		}
		fmt.Fprintf(tw, "%s\tqueue %d/%d\t\t\t\t\t\t\t\n", p.Name, p.Queue.Length, p.Queue.Max)
	}
	tw.Flush()
	for _, p := range st.Pools {
		if p.Launch == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s launches %s (max_conns %d; %d unexpected exits)\n", p.Name, strings.Join(p.Launch.Command, " "), p.Launch.MaxConns, p.Launch.Restarts)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "INSTANCE\tPID\tADDR\tSTATE\tSINCE\tRESTARTS\tLAST EXIT")
		for _, in := range p.Launch.Instances {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%d\t%s\n", in.ID, in.PID, in.Addr, in.State,
				in.Since.Format(time.RFC3339), in.Restarts, in.LastExit)
		}
		tw.Flush()
	}
}

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
