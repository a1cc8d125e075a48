package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers for the tests that read the repo's Markdown (docs/api.md,
// SECURITY.md) and run the commands it shows, so that the documents cannot
// drift from what works.

// repoFile is the path of a file of the repo, relative to its root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(filepath.Dir(examplesDir(t)), rel)
}

// markdownLine is one line of a Markdown file with its number and where it
// stands: the headings above it and, inside a fenced block, which block and
// its language. Fence lines themselves are left out.
type markdownLine struct {
	n      int
	text   string
	h2, h3 string
	block  int    // 1, 2, … for the lines of each fenced block; 0 outside
	lang   string // of the fenced block the line is in
}

// readMarkdown splits a Markdown file into lines that know their section.
func readMarkdown(t *testing.T, path string) []markdownLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []markdownLine
	var h2, h3, lang string
	blocks, inBlock := 0, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "```") && inBlock:
			inBlock = false
			continue
		case strings.HasPrefix(text, "```"):
			inBlock, lang = true, strings.TrimPrefix(text, "```")
			blocks++
			continue
		case inBlock:
			lines = append(lines, markdownLine{n: n, text: text, h2: h2, h3: h3, block: blocks, lang: lang})
			continue
		case strings.HasPrefix(text, "## "):
			h2, h3 = strings.TrimPrefix(text, "## "), ""
		case strings.HasPrefix(text, "### "):
			h3 = strings.TrimPrefix(text, "### ")
		}
		lines = append(lines, markdownLine{n: n, text: text, h2: h2, h3: h3})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// codeBlocks returns the fenced blocks of lang (all when empty) among the
// lines keep selects, in order.
func codeBlocks(lines []markdownLine, lang string, keep func(markdownLine) bool) []string {
	var blocks []string
	last := 0
	for _, l := range lines {
		if l.block == 0 || !keep(l) || lang != "" && l.lang != lang {
			continue
		}
		if l.block != last {
			blocks = append(blocks, "")
			last = l.block
		}
		blocks[len(blocks)-1] += l.text + "\n"
	}
	return blocks
}

// tableRows returns the rows of the Markdown table that starts at lines[i]
// (its header), as cells without surrounding space, and the index after it.
func tableRows(lines []markdownLine, i int) (header []string, rows [][]string, lineNos []int, next int) {
	cells := func(s string) []string {
		s = strings.TrimSpace(s)
		s = strings.TrimSuffix(strings.TrimPrefix(s, "|"), "|")
		var out []string
		for _, c := range strings.Split(s, "|") {
			out = append(out, strings.TrimSpace(c))
		}
		return out
	}
	header = cells(lines[i].text)
	i += 2 // the header and the |---| line
	for ; i < len(lines) && strings.HasPrefix(lines[i].text, "|") && lines[i].block == 0; i++ {
		rows = append(rows, cells(lines[i].text))
		lineNos = append(lineNos, lines[i].n)
	}
	return header, rows, lineNos, i
}

// unquote strips the backticks around a table cell.
func unquote(cell string) string {
	return strings.Trim(cell, "`")
}

// runScript runs script with bash (-euo pipefail) in dir, with the Vault
// binary under test first in PATH, HOME set to dir and env added, and
// returns its standard output. It fails t, with the redacted output, when
// the script fails.
func runScript(t *testing.T, dir, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(),
		"PATH="+filepath.Dir(suite.vaultBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("script failed: %v\n--- script:\n%s--- stdout:\n%s--- stderr:\n%s",
			err, script, redact(stdout.String()), redact(stderr.String()))
	}
	return stdout.String()
}

// requireTools fails t when one of the commands a document's script uses
// is not installed (.ci/run installs curl and jq when they are missing).
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s is not installed; the documented commands this test runs need it", name)
		}
	}
}
