package standin

import (
	"net/http"
	"strconv"
)

// LogRequests wraps h so that each request is logged by logf as its method,
// escaped path and status, and nothing else: no query, header or body, which
// could carry a client secret or a token. A connection dropped without a
// reply is logged with status "-".
func LogRequests(h http.Handler, logf func(format string, args ...any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		// Deferred, so that requests whose connection is aborted are logged too.
		defer func() {
			status := "-"
			if rec.status != 0 {
				status = strconv.Itoa(rec.status)
			}
			logf("%s %s %s", r.Method, r.URL.EscapedPath(), status)
		}()
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status a handler sends. Unwrap lets
// http.ResponseController reach the connection beneath, for Flush and
// Hijack.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records status and sends it.
func (rec *statusRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

// Write records an implicit 200 and writes p.
func (rec *statusRecorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(p)
}

// Unwrap returns the wrapped ResponseWriter.
func (rec *statusRecorder) Unwrap() http.ResponseWriter {
	return rec.ResponseWriter
}
