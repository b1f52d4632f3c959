// Package uitest drives the admin dashboard in headless Chromium for tests: it starts the
// browser (or skips the test when there is none), opens tabs that record everything the page
// writes to its console, and waits for conditions in the page, every wait with a bound.
package uitest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Bounds of the browser's steps. Generous, so that a loaded CI machine does not fail a test
// that is not broken; a page that works answers within milliseconds.
const (
	startTimeout  = 30 * time.Second // start Chromium
	openTimeout   = 20 * time.Second // open a tab and load its first page
	actionTimeout = 20 * time.Second // one Do or Eval
	lifeTimeout   = 5 * time.Minute  // the browser's whole life, the longest test included
)

// Browser starts headless Chromium for the test and stops it when the test ends. It skips
// the test when no Chromium is on PATH. The flags suit CI running as root: headless,
// --no-sandbox, --disable-gpu, --disable-dev-shm-usage.
func Browser(t testing.TB) context.Context {
	t.Helper()
	// The names Chromium has on Debian and elsewhere, and Google's builds.
	executables := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"}
	var exe string
	for _, name := range executables {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		t.Skipf("no Chromium on PATH (%s): scripts/test.sh installs Debian's chromium", strings.Join(executables, ", "))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // as root, Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancel := context.WithTimeout(context.Background(), lifeTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit and removes its profile directory
		cancel()
	})
	if err := first(browser, startTimeout, cancelBrowser, func() error { return chromedp.Do(browser) }); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return browser
}

// first runs the first action of a chromedp context, the one that ties the browser or the tab
// to that context (so it cannot carry a timeout of its own), and cancels the context if it
// takes longer than d.
func first(ctx context.Context, d time.Duration, cancel context.CancelFunc, f func() error) error {
	timer := time.AfterFunc(d, cancel)
	defer timer.Stop()
	err := f()
	if ctx.Err() != nil {
		return fmt.Errorf("not done within %v: %w", d, err)
	}
	return err
}

// Tab is one page of the browser with everything it wrote to its console.
type Tab struct {
	// Ctx is the tab's chromedp context, for what Do and Eval do not cover. Bound each use.
	Ctx context.Context

	mu  sync.Mutex
	log []ConsoleEntry
}

// ConsoleEntry is one message the page wrote to the console.
type ConsoleEntry struct {
	// Source is "console" (a console API call), "exception" (uncaught, or an unhandled
	// rejection), or the browser log's source for its warnings and errors: "network",
	// "security", "javascript", …
	Source string
	Text   string
}

// Open opens url in a new tab of browser (from Browser). The tab records console API calls,
// exceptions and the browser log's warnings and errors from its very first event; it closes
// when the test ends.
func Open(t testing.TB, browser context.Context, url string) *Tab {
	t.Helper()
	tb := &Tab{}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	tb.Ctx = ctx
	if err := first(ctx, openTimeout, cancel, func() error { return chromedp.Do(ctx, chromedp.Navigate(url)) }); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return tb
}

// listen runs in the tab's event loop: it must return at once and send no command.
func (tb *Tab) listen(ev any) {
	var e ConsoleEntry
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		args := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		e = ConsoleEntry{"console", string(ev.Type) + ": " + strings.Join(args, " ")}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		e = ConsoleEntry{"exception", fmt.Sprintf("%s (%s:%d)", text, d.URL, d.LineNumber+1)}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelWarning && ev.Entry.Level != log.EntryLevelError {
			return // verbose and info: Chrome's own notes, such as [Violation] timings
		}
		e = ConsoleEntry{string(ev.Entry.Source), string(ev.Entry.Level) + ": " + ev.Entry.Text + " " + ev.Entry.URL}
	default:
		return
	}
	tb.mu.Lock()
	tb.log = append(tb.log, e)
	tb.mu.Unlock()
}

// Console returns what the page has written to the console so far.
func (tb *Tab) Console() []ConsoleEntry {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]ConsoleEntry(nil), tb.log...)
}

// NoConsoleMessages fails the test for anything the page wrote to the console: the dashboard
// never logs, so any console call, exception, warning or error is a defect. Browser log
// entries from allowSources (such as "network" while a test makes the API fail) are allowed.
func (tb *Tab) NoConsoleMessages(t testing.TB, allowSources ...string) {
	t.Helper()
	for _, e := range tb.Console() {
		allowed := false
		for _, s := range allowSources {
			allowed = allowed || e.Source == s
		}
		if !allowed {
			t.Errorf("console %s: %s", e.Source, e.Text)
		}
	}
}

// Do runs actions in the tab, bounded, failing the test on an error.
func (tb *Tab) Do(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// Eval evaluates a JavaScript expression in the tab and decodes its value into T, bounded,
// failing the test on an error or an exception.
func Eval[T any](t testing.TB, tb *Tab, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// WaitFor evaluates a JavaScript condition every 25 ms until it is true, failing the test
// after d. It polls from Go rather than with chromedp.Poll, whose in-page new Function the
// dashboard's Content-Security-Policy forbids.
func (tb *Tab) WaitFor(t testing.TB, d time.Duration, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, d)
	defer cancel()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+cond+")"))
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not true within %v: %s (last error: %v)", d, cond, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WaitPolled waits until the dashboard has finished n successful polls (its body's
// data-updated), allowing the 1 s between polls and 4 s more.
func (tb *Tab) WaitPolled(t testing.TB, n int) {
	t.Helper()
	tb.WaitFor(t, time.Duration(n+4)*time.Second, fmt.Sprintf("Number(document.body.dataset.updated) >= %d", n))
}
