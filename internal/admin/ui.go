package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

// uiFiles holds the dashboard: index.html and the assets it loads. Embedded, so the binary
// serves it with no file on disk and the page fetches nothing from another origin.
//
//go:embed ui
var uiFiles embed.FS

// uiCSP is the dashboard's Content-Security-Policy: its own script, style and API, a data:
// favicon, nothing else. The page holds an admin token, so no other code may run in it.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiFile is one embedded file, read once when UI builds its handler.
type uiFile struct {
	name        string
	body        []byte
	contentType string
	etag        string // strong, from the content: a browser revalidates and gets 304
	page        bool   // the HTML page, which gets the security headers
}

// uiHandler serves the files of the dashboard by URL path.
type uiHandler map[string]uiFile

// UI returns the dashboard: index.html at "/", its assets under "/ui/" (embedded with
// //go:embed). The page polls GET api/v1/pools and GET api/v1/events relative to its own URL,
// so mount the handler at the admin listener's root, unprefixed, next to the API.
//
// Every other path answers 404 and every method but GET and HEAD 405, both with writeError's
// {"error": "..."}. The files carry an ETag and "Cache-Control: no-cache", so a browser
// revalidates them and an upgraded binary never serves a stale page. The handler does no
// authentication of its own: New puts it behind the admin token (a ?token= link lets the
// page and its assets load), and the page sends that token as "Authorization: Bearer" with
// each API request, keeping it in sessionStorage and out of the visible URL.
func UI() http.Handler {
	h := uiHandler{}
	err := fs.WalkDir(uiFiles, "ui", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := uiFiles.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := uiFile{
			name:        path.Base(name),
			body:        body,
			contentType: uiContentType(name),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		urlPath := "/" + name // "/ui/app.js"
		if name == "ui/index.html" {
			urlPath, f.page = "/", true
		}
		h[urlPath] = f
		return nil
	})
	if err != nil {
		// The files are compiled in; reading them cannot fail unless the binary is broken.
		panic("admin: read embedded dashboard: " + err.Error())
	}
	return h
}

func (h uiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := h[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
		return
	}
	hdr := w.Header()
	if f.contentType != "" {
		hdr.Set("Content-Type", f.contentType)
	}
	hdr.Set("ETag", f.etag)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if f.page {
		hdr.Set("Content-Security-Policy", uiCSP)
		hdr.Set("Referrer-Policy", "no-referrer") // the URL can carry ?token= until the script removes it
		hdr.Set("X-Frame-Options", "DENY")
	}
	// ServeContent answers If-None-Match (304), HEAD and Range from the ETag and the body.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// uiContentType names the type of the files the dashboard ships without asking the system's
// mime tables, which differ between machines (a module script must be served as JavaScript).
func uiContentType(name string) string {
	switch ext := path.Ext(name); ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	default:
		return mime.TypeByExtension(ext)
	}
}
