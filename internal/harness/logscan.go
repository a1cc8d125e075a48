package harness

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Secrets holds every secret a run made up or saw (client secrets, access
// tokens, root tokens, unseal keys) and every log file its processes wrote,
// so that the logs can be scanned for the secrets at the end and output
// scrubbed of them on the way. It is safe for concurrent use.
type Secrets struct {
	mu     sync.Mutex
	labels map[string]string // value -> what it is
	logs   []string
}

// MinSecretLen is the shortest value Remember takes: anything shorter is
// too common to search logs for.
const MinSecretLen = 12

// Remember records value as a secret described by label. A value shorter
// than MinSecretLen is refused with an error.
func (s *Secrets) Remember(label, value string) error {
	if len(value) < MinSecretLen {
		return fmt.Errorf("%s: implausibly short secret (%d bytes)", label, len(value))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labels == nil {
		s.labels = make(map[string]string)
	}
	if _, ok := s.labels[value]; !ok {
		s.labels[value] = label
	}
	// The signature of a JWT is unique to it too: a log line that printed
	// a token cut short would still carry it.
	if parts := strings.Split(value, "."); len(parts) == 3 && len(parts[2]) >= 16 {
		if _, ok := s.labels[parts[2]]; !ok {
			s.labels[parts[2]] = label + " (JWT signature)"
		}
	}
	return nil
}

// Labels is a copy of the secrets remembered, each with what it is.
func (s *Secrets) Labels() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.labels)
}

// Redact replaces every remembered secret in text.
func (s *Secrets) Redact(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for value, label := range s.labels {
		text = strings.ReplaceAll(text, value, "[REDACTED "+label+"]")
	}
	return text
}

// AddLog records a log file to scan. A restarted process reuses its log;
// it is listed once.
func (s *Secrets) AddLog(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.logs, path) {
		s.logs = append(s.logs, path)
	}
}

// Logs lists the log files recorded.
func (s *Secrets) Logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.logs)
}

// ScanWindow is how many consecutive characters of a secret count as a
// leak in a log scan: a secret cut short, or split in two, still shows.
const ScanWindow = 12

// ScanResult is what a log scan found.
type ScanResult struct {
	// Findings name each hit by file, line and the kind of secret, never
	// the secret.
	Findings []string
	Files    int
	Bytes    int64
	Secrets  int
}

// Scan looks for every remembered secret in every log recorded.
func (s *Secrets) Scan() (ScanResult, error) {
	return ScanFiles(s.Logs(), s.Labels())
}

// ScanFiles looks for every run of ScanWindow characters of every key of
// labels in every file of paths and describes each hit by file, line and
// label. A JWT is looked for by its signature (remembered on its own),
// since its header and claims are shared by every token. A file that cannot
// be read is an error; the others are scanned all the same.
func ScanFiles(paths []string, labels map[string]string) (ScanResult, error) {
	r := ScanResult{Files: len(paths), Secrets: len(labels)}
	windows := map[string]string{}
	for v, label := range labels {
		if strings.Count(v, ".") == 2 || len(v) < ScanWindow {
			continue
		}
		for i := 0; i+ScanWindow <= len(v); i++ {
			windows[v[i:i+ScanWindow]] = label
		}
	}
	var errs []error
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Bytes += int64(len(data))
		reported := map[string]bool{}
		for i := 0; i+ScanWindow <= len(data); i++ {
			label, hit := windows[string(data[i:i+ScanWindow])]
			if !hit || reported[label] {
				continue
			}
			reported[label] = true
			line := bytes.Count(data[:i], []byte("\n")) + 1
			r.Findings = append(r.Findings, fmt.Sprintf("%s line %d contains %d characters of a %s", path, line, ScanWindow, label))
		}
	}
	sort.Strings(r.Findings)
	return r, errors.Join(errs...)
}
