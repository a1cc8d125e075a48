package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// apiEndpoint is one operation of docs/api.md: a "## " section with a
// Method/Path table.
type apiEndpoint struct {
	title  string
	line   int
	method string // GET, POST, PATCH, DELETE or LIST
	path   string // as the doc writes it: /piwik/roles/:name
	// params and response are the "### Parameters" and "### Response
	// fields" tables, by field name.
	params   map[string]apiField
	response map[string]apiField
	// samples are the JSON blocks under "### Sample response…" headings;
	// requests the shell blocks under "### Sample request".
	samples  []string
	requests []string
}

// apiField is one row of a parameter or response table.
type apiField struct {
	typ, def, required string
	line               int
}

// oasKey is the OpenAPI path and method of the endpoint: LIST is a GET of
// the path with a trailing slash, :name is {name}.
func (e apiEndpoint) oasKey() (path, method string) {
	path = regexp.MustCompile(`:(\w+)`).ReplaceAllString(e.path, "{$1}")
	if e.method == "LIST" {
		return path + "/", "get"
	}
	return path, strings.ToLower(e.method)
}

func (e apiEndpoint) String() string {
	return fmt.Sprintf("docs/api.md:%d %s %s", e.line, e.method, e.path)
}

// parseAPIDoc reads the endpoints of docs/api.md.
func parseAPIDoc(t *testing.T) []apiEndpoint {
	t.Helper()
	lines := readMarkdown(t, repoFile(t, "docs/api.md"))
	var eps []apiEndpoint
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l.block != 0 || !strings.HasPrefix(l.text, "|") {
			continue
		}
		header, rows, lineNos, next := tableRows(lines, i)
		i = next - 1
		for k, r := range rows {
			if len(r) != len(header) {
				t.Fatalf("docs/api.md:%d: %d cells in a table of %d columns", lineNos[k], len(r), len(header))
			}
		}
		switch {
		case slices.Equal(header, []string{"Method", "Path"}):
			if len(rows) != 1 || len(rows[0]) != 2 {
				t.Errorf("docs/api.md:%d: a Method/Path table must have one row", l.n)
				continue
			}
			eps = append(eps, apiEndpoint{
				title:    l.h2,
				line:     l.n,
				method:   unquote(rows[0][0]),
				path:     unquote(rows[0][1]),
				params:   map[string]apiField{},
				response: map[string]apiField{},
			})
		case len(eps) == 0 || eps[len(eps)-1].title != l.h2:
			// A table outside an endpoint's section (the overview).
		case l.h3 == "Parameters":
			if !slices.Equal(header, []string{"Name", "Type", "Default", "Required", "Description"}) {
				t.Errorf("docs/api.md:%d: parameter table columns %v", l.n, header)
				continue
			}
			for k, r := range rows {
				eps[len(eps)-1].params[unquote(r[0])] = apiField{typ: unquote(r[1]), def: unquote(r[2]), required: r[3], line: lineNos[k]}
			}
		case l.h3 == "Response fields":
			if !slices.Equal(header, []string{"Name", "Type", "Description"}) {
				t.Errorf("docs/api.md:%d: response table columns %v", l.n, header)
				continue
			}
			for k, r := range rows {
				eps[len(eps)-1].response[unquote(r[0])] = apiField{typ: unquote(r[1]), line: lineNos[k]}
			}
		}
	}
	for k := range eps {
		e := &eps[k]
		in := func(h3prefix string) func(markdownLine) bool {
			return func(l markdownLine) bool { return l.h2 == e.title && strings.HasPrefix(l.h3, h3prefix) }
		}
		e.samples = codeBlocks(lines, "json", in("Sample response"))
		e.requests = codeBlocks(lines, "shell-session", in("Sample request"))
	}
	return eps
}

// oasTypeName is the type docs/api.md gives a field of OpenAPI schema s.
func oasTypeName(s *oasSchema) string {
	switch {
	case s == nil:
		return "?"
	case s.Type == "string" && s.Format == "duration":
		return "duration"
	case s.Type == "object":
		return "map"
	default:
		return s.Type
	}
}

// zeroDefaults are the defaults the doc may write for a field whose OpenAPI
// schema has none: the zero value Vault gives it.
var zeroDefaults = map[string][]string{
	"string":   {"", `""`},
	"integer":  {"", "0"},
	"duration": {"", "0"},
	"boolean":  {"", "false"},
}

// sameDefault reports whether the doc's default cell says what the OpenAPI
// default raw (JSON) says, for a field of type typ.
func sameDefault(cell string, raw json.RawMessage, typ string) bool {
	if len(raw) == 0 || string(raw) == "null" {
		return slices.Contains(zeroDefaults[typ], cell)
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch typ {
	case "duration":
		seconds, ok := v.(float64)
		if !ok {
			return false
		}
		if n, err := strconv.Atoi(cell); err == nil {
			return float64(n) == seconds
		}
		d, err := time.ParseDuration(cell)
		return err == nil && d.Seconds() == seconds
	case "string":
		return `"`+fmt.Sprint(v)+`"` == cell || fmt.Sprint(v) == cell
	default:
		return fmt.Sprint(v) == cell
	}
}

// oasParams returns the request parameters of an operation the way the
// doc lists them: path and query parameters and request body fields, each
// with its schema and whether it is required. The list parameter Vault
// adds to every LIST is left out.
func (d *oasDoc) oasParams(t *testing.T, item oasPath, method string, op *oasOperation) map[string]oasField {
	t.Helper()
	out := map[string]oasField{}
	for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
		if p.Name == "list" && p.In == "query" {
			continue
		}
		schema := p.Schema
		if schema == nil {
			schema = &oasSchema{}
		}
		out[p.Name] = oasField{schema: schema, required: p.Required}
	}
	if op.RequestBody != nil {
		body, _ := d.schema(t, strings.ToUpper(method), op, "Request")
		for name, s := range body.Properties {
			out[name] = oasField{schema: s, required: slices.Contains(body.Required, name)}
		}
	}
	return out
}

type oasField struct {
	schema   *oasSchema
	required bool
}

// TestAPIDocMatchesOpenAPI compares docs/api.md with the OpenAPI document
// of a running Vault with the plugin mounted at piwik/, both ways: every
// operation of the plugin is documented and every documented one exists;
// each operation's parameters (name, type, default, whether required) and
// response fields (name, type) are exactly those of the OpenAPI document.
// It also checks that each sample request uses its section's method and
// path, and that each sample response shows only documented fields.
func TestAPIDocMatchesOpenAPI(t *testing.T) {
	env := sharedDev(t)
	doc := readOpenAPI(t, env.vault)
	eps := parseAPIDoc(t)
	if len(eps) == 0 {
		t.Fatal("docs/api.md documents no endpoint (no Method/Path tables found)")
	}

	var diffs []string
	diff := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }

	documented := map[string]apiEndpoint{}
	for _, e := range eps {
		path, method := e.oasKey()
		key := strings.ToUpper(method) + " " + path
		if other, dup := documented[key]; dup {
			diff("%s: documented twice (also %s)", e, other)
		}
		documented[key] = e
	}
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/piwik/") {
			continue
		}
		for method := range item.operations() {
			if _, ok := documented[strings.ToUpper(method)+" "+path]; !ok {
				diff("%s %s: in the OpenAPI document, not in docs/api.md", strings.ToUpper(method), path)
			}
		}
	}

	for _, e := range eps {
		path, method := e.oasKey()
		item, ok := doc.Paths[path]
		op := item.operations()[method]
		if !ok || op == nil {
			diff("%s: documented, not in the OpenAPI document (as %s %s)", e, strings.ToUpper(method), path)
			continue
		}

		got := doc.oasParams(t, item, method, op)
		for _, name := range slices.Sorted(maps.Keys(got)) {
			f, ok := e.params[name]
			want := got[name]
			switch {
			case !ok:
				diff("%s: parameter %s is in the OpenAPI document, not in the doc", e, name)
			case f.typ != oasTypeName(want.schema):
				diff("%s: parameter %s: the doc says type %s, the OpenAPI document %s", e, name, f.typ, oasTypeName(want.schema))
			case !sameDefault(f.def, want.schema.Default, f.typ):
				diff("%s: parameter %s: the doc says default %q, the OpenAPI document %s", e, name, f.def, orNone(want.schema.Default))
			case strings.HasPrefix(f.required, "yes") != want.required:
				diff("%s: parameter %s: the doc says required %q, the OpenAPI document required=%t", e, name, f.required, want.required)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(e.params)) {
			if _, ok := got[name]; !ok {
				diff("%s: parameter %s (line %d) is in the doc, not in the OpenAPI document", e, name, e.params[name].line)
			}
		}

		resp := map[string]*oasSchema{}
		if r, ok := op.Responses["200"]; ok && len(r.Content) > 0 {
			s, _ := doc.schema(t, e.String(), op, "Response")
			resp = s.Properties
		}
		for _, name := range slices.Sorted(maps.Keys(resp)) {
			f, ok := e.response[name]
			switch {
			case !ok:
				diff("%s: response field %s is in the OpenAPI document, not in the doc", e, name)
			case f.typ != oasTypeName(resp[name]):
				diff("%s: response field %s: the doc says type %s, the OpenAPI document %s", e, name, f.typ, oasTypeName(resp[name]))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(e.response)) {
			if _, ok := resp[name]; !ok {
				diff("%s: response field %s (line %d) is in the doc, not in the OpenAPI document", e, name, e.response[name].line)
			}
		}

		diffs = append(diffs, checkSamples(e)...)
	}

	for _, d := range diffs {
		t.Error(d)
	}
	if len(diffs) > 0 {
		t.Logf("%d differences between docs/api.md and the plugin's OpenAPI document", len(diffs))
	}
}

// checkSamples checks that e's sample requests use its method and path and
// that its sample responses show only its documented response fields.
func checkSamples(e apiEndpoint) []string {
	var diffs []string
	if len(e.requests) == 0 {
		diffs = append(diffs, fmt.Sprintf("%s: no sample request", e))
	}
	pathRe := regexp.MustCompile(`/v1` + regexp.MustCompile(`:\w+`).ReplaceAllString(regexp.QuoteMeta(e.path), `[^/\s"?]+`) + `["?\s]`)
	for _, req := range e.requests {
		method := "GET"
		if m := regexp.MustCompile(`--request (\w+)`).FindStringSubmatch(req); m != nil {
			method = m[1]
		}
		if !strings.Contains(req, "curl") || method != e.method || !pathRe.MatchString(req) {
			diffs = append(diffs, fmt.Sprintf("%s: a sample request is not a curl %s of %s:\n%s", e, e.method, e.path, req))
		}
	}
	for _, sample := range e.samples {
		var body struct {
			Data map[string]json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(sample), &body); err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: a sample response is not JSON: %v", e, err))
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(body.Data)) {
			if _, ok := e.response[name]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: the sample response shows %s, which the response table does not document", e, name))
			}
		}
	}
	return diffs
}

func orNone(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "has none"
	}
	return "says " + string(raw)
}

// TestAPIDocCurlRecipe runs the curl and jq recipe of docs/api.md as it
// stands there, with a token that has the recipe's policy, against the
// shared dev server: it must print whom the token acts for and revoke the
// lease it read, without printing the token.
func TestAPIDocCurlRecipe(t *testing.T) {
	env := sharedDev(t)
	v, st := env.vault, env.standin
	dir := testDir(t)
	requireTools(t, "bash", "curl", "jq")

	lines := readMarkdown(t, repoFile(t, "docs/api.md"))
	inRecipe := func(l markdownLine) bool { return l.h2 == "Recipe: a token with curl and jq" }
	policies, scripts := codeBlocks(lines, "hcl", inRecipe), codeBlocks(lines, "sh", inRecipe)
	if len(policies) != 1 || len(scripts) != 1 {
		t.Fatalf("docs/api.md: the recipe section has %d hcl and %d sh blocks, want one of each", len(policies), len(scripts))
	}
	policyFile := filepath.Join(dir, "curl-recipe.hcl")
	writeFile(t, policyFile, policies[0])
	v.vault(t, "policy", "write", "curl-recipe", policyFile)
	token := v.newToken(t, "curl-recipe")

	before := st.stats(t)
	out := runScript(t, dir, scripts[0], "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+token, "PIWIK_URL="+st.url)
	if issued := st.stats(t).TokensIssued - before.TokensIssued; issued != 1 {
		t.Errorf("the recipe made the stand-in issue %d tokens, want 1", issued)
	}
	if jwtShape.MatchString(out) {
		t.Fatalf("the recipe printed a token:\n%s", redact(out))
	}
	if want := "acting as " + st.clientID + "@example.com\n"; !strings.Contains(out, want) {
		t.Errorf("the recipe did not print %q (the stand-in's /me answer for its token):\n%s", want, out)
	}
	m := regexp.MustCompile(`(?m)^lease (\S+), token valid until (\S+)$`).FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[1], "piwik/creds/reporting/") {
		t.Fatalf("the recipe did not print the lease it read:\n%s", out)
	}
	if exp, err := time.Parse(time.RFC3339, m[2]); err != nil || time.Until(exp) < 20*time.Minute {
		t.Errorf("the recipe printed expires_at %q, want about 30 minutes from now", m[2])
	}
	if !strings.Contains(out, "revoked "+m[1]+"\n") {
		t.Errorf("the recipe did not say it revoked %s:\n%s", m[1], out)
	}
	if r := v.run(t, v.token, "", "lease", "lookup", m[1]); r.exitCode == 0 {
		t.Errorf("lease %s is still there after the recipe revoked it", m[1])
	}
}
