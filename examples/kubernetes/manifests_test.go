package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The releases the manifests and docs/kubernetes.md were written for; the
// page must name each.
var writtenFor = []string{
	"Vault Secrets Operator v1.4.1",
	"(vault-k8s) v1.7.6",
	"Vault CSI provider v1.7.4",
}

// namespace is where every example object lives.
const namespace = "analytics"

// specFields are the fields each custom resource's spec may have, from the
// API types of the releases above; a field outside them is a typo the
// cluster would reject or ignore.
var specFields = map[string][]string{
	"VaultConnection": {"address", "headers", "tlsServerName", "caCertSecretRef", "caCertPath", "skipTLSVerify", "timeout"},
	"VaultAuth": {"vaultConnectionRef", "vaultAuthGlobalRef", "namespace", "allowedNamespaces", "method", "mount",
		"params", "headers", "kubernetes", "appRole", "jwt", "aws", "gcp", "storageEncryption"},
	"VaultDynamicSecret": {"vaultAuthRef", "namespace", "mount", "requestHTTPMethod", "path", "params", "renewalPercent",
		"revoke", "allowStaticCreds", "rolloutRestartTargets", "destination", "refreshAfter"},
	"SecretProviderClass": {"provider", "parameters", "secretObjects"},
}

// kinds are the apiVersion of each kind the examples may use.
var kinds = map[string]string{
	"ServiceAccount":      "v1",
	"Deployment":          "apps/v1",
	"VaultConnection":     "secrets.hashicorp.com/v1beta1",
	"VaultAuth":           "secrets.hashicorp.com/v1beta1",
	"VaultDynamicSecret":  "secrets.hashicorp.com/v1beta1",
	"SecretProviderClass": "secrets-store.csi.x-k8s.io/v1",
}

// injectorAnnotations are the vault.hashicorp.com/ annotations the examples
// may use (of vault-k8s v1.7.6), and injectorPerSecret those that end in
// the name of a secret.
var (
	injectorAnnotations = []string{"agent-inject", "role", "agent-run-as-same-user", "agent-image",
		"template-lease-renewal-threshold", "template-static-secret-render-interval", "template-config-exit-on-retry-failure"}
	injectorPerSecret = []string{"agent-inject-secret-", "agent-inject-template-", "agent-inject-perms-", "agent-inject-file-"}
)

// object is one parsed manifest with where it came from.
type object struct {
	file, apiVersion, kind, name, ns string
	doc                              map[string]any
}

func (o object) String() string { return fmt.Sprintf("%s %s/%s (%s)", o.kind, o.ns, o.name, o.file) }

// piwikRole is a role of the mount piwik/ as the documents write it.
type piwikRole struct{ leased bool }

// vaultAuthRole is a role of Vault's Kubernetes auth method in the page.
type vaultAuthRole struct {
	serviceAccounts, namespaces, policies []string
}

// TestManifests parses every manifest and checks it against
// docs/kubernetes.md and the README: known kinds and fields, required
// fields, the references between objects, and that every path a pod reads
// is the creds path of a role both documents write, read by a service
// account that the page binds to a Vault role whose policy allows it.
func TestManifests(t *testing.T) {
	objects := readManifests(t)
	page := readFile(t, "../../docs/kubernetes.md")
	readme := readFile(t, "../../README.md")
	for _, v := range writtenFor {
		if !strings.Contains(page, v) {
			t.Errorf("docs/kubernetes.md does not say it was written for %s", v)
		}
	}
	roles := piwikRoles(t, "docs/kubernetes.md", page)
	readmeRoles := piwikRoles(t, "README.md", readme)
	authRoles := kubernetesAuthRoles(t, page)
	if len(roles) == 0 || len(authRoles) == 0 {
		t.Fatal("docs/kubernetes.md writes no piwik role or no Kubernetes auth role")
	}
	for name, r := range roles {
		rr, ok := readmeRoles[name]
		if !ok {
			t.Errorf("docs/kubernetes.md writes role %q, which the README does not", name)
		} else if rr.leased != r.leased {
			t.Errorf("role %q is leased=%t in docs/kubernetes.md but leased=%t in the README", name, r.leased, rr.leased)
		}
	}

	byKind := map[string]map[string]object{}
	for _, o := range objects {
		if want, ok := kinds[o.kind]; !ok {
			t.Errorf("%s: unexpected kind", o)
			continue
		} else if o.apiVersion != want {
			t.Errorf("%s: apiVersion %q, want %q", o, o.apiVersion, want)
		}
		if o.name == "" || o.ns != namespace {
			t.Errorf("%s: want a name and namespace %q", o, namespace)
		}
		if byKind[o.kind] == nil {
			byKind[o.kind] = map[string]object{}
		}
		if _, dup := byKind[o.kind][o.name]; dup {
			t.Errorf("%s: defined twice", o)
		}
		byKind[o.kind][o.name] = o
		if allowed, ok := specFields[o.kind]; ok {
			for _, k := range keysOf(mapAt(o.doc, "spec")) {
				if !slices.Contains(allowed, k) {
					t.Errorf("%s: unknown spec field %q", o, k)
				}
			}
		}
	}
	for _, kind := range []string{"ServiceAccount", "Deployment", "VaultConnection", "VaultAuth", "VaultDynamicSecret", "SecretProviderClass"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s in examples/kubernetes", kind)
		}
	}

	// readsAs checks that service account sa may read the creds path of
	// role through Vault role authRole, as the page sets them up.
	readsAs := func(o object, sa, authRole, role string) {
		t.Helper()
		if _, ok := byKind["ServiceAccount"][sa]; !ok {
			t.Errorf("%s: service account %q is not in serviceaccounts.yaml", o, sa)
		}
		ar, ok := authRoles[authRole]
		if !ok {
			t.Errorf("%s: Vault role %q is not written in docs/kubernetes.md", o, authRole)
			return
		}
		if !slices.Contains(ar.serviceAccounts, sa) || !slices.Contains(ar.namespaces, namespace) {
			t.Errorf("%s: Vault role %q is bound to %v in %v, not to %s in %s", o, authRole, ar.serviceAccounts, ar.namespaces, sa, namespace)
		}
		allowed := false
		for _, p := range ar.policies {
			if policyAllowsRead(t, p, "piwik/creds/"+role) {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("%s: none of the policies %v of Vault role %q allows read on piwik/creds/%s", o, ar.policies, authRole, role)
		}
	}
	// roleOf returns the role of a creds path, failing t unless the page
	// writes it.
	roleOf := func(o object, path string) (string, piwikRole) {
		t.Helper()
		name, ok := strings.CutPrefix(path, "piwik/creds/")
		r, known := roles[name]
		if !ok || !known {
			t.Errorf("%s: reads %q, which is not the creds path of a role docs/kubernetes.md writes", o, path)
		}
		return name, r
	}

	for _, o := range byKind["VaultAuth"] {
		spec := mapAt(o.doc, "spec")
		if _, ok := byKind["VaultConnection"][str(spec, "vaultConnectionRef")]; !ok {
			t.Errorf("%s: vaultConnectionRef %q names no VaultConnection", o, str(spec, "vaultConnectionRef"))
		}
		if str(spec, "method") != "kubernetes" || str(spec, "mount") != "kubernetes" {
			t.Errorf("%s: want method and mount kubernetes", o)
		}
	}
	for _, o := range byKind["VaultConnection"] {
		if !strings.HasPrefix(str(mapAt(o.doc, "spec"), "address"), "https://") {
			t.Errorf("%s: want an https address", o)
		}
	}

	for _, o := range byKind["VaultDynamicSecret"] {
		spec := mapAt(o.doc, "spec")
		if str(spec, "mount") == "" || str(spec, "path") == "" {
			t.Errorf("%s: mount and path are required", o)
		}
		name, role := roleOf(o, str(spec, "mount")+"/"+str(spec, "path"))
		auth, ok := byKind["VaultAuth"][str(spec, "vaultAuthRef")]
		if !ok {
			t.Errorf("%s: vaultAuthRef %q names no VaultAuth", o, str(spec, "vaultAuthRef"))
		} else {
			k := mapAt(mapAt(auth.doc, "spec"), "kubernetes")
			readsAs(o, str(k, "serviceAccount"), str(k, "role"), name)
		}
		dest := mapAt(spec, "destination")
		if str(dest, "name") == "" || dest["create"] != true {
			t.Errorf("%s: destination needs a name and create: true", o)
		}
		if spec["allowStaticCreds"] != nil {
			t.Errorf("%s: allowStaticCreds is set; with this plugin's responses the operator would sync once and never again", o)
		}
		if rp, ok := spec["renewalPercent"]; ok {
			if n, isInt := rp.(int); !isInt || n < 0 || n > 75 {
				t.Errorf("%s: renewalPercent %v, want 0 to 75 (at 90, the jitter can reach the lease's end)", o, rp)
			}
		}
		refresh, hasRefresh := spec["refreshAfter"].(string)
		if role.leased && hasRefresh {
			t.Errorf("%s: refreshAfter on the leased role %q: the lease decides", o, name)
		}
		if !role.leased && (!hasRefresh || !regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(s|m|h))$`).MatchString(refresh)) {
			t.Errorf("%s: the role %q has no lease: refreshAfter must be a duration such as 5m, got %q", o, name, refresh)
		}
		targets, _ := spec["rolloutRestartTargets"].([]any)
		if len(targets) > 0 && !role.leased {
			t.Errorf("%s: rolloutRestartTargets on a role without a lease restart the pods at every refresh", o)
		}
		for _, x := range targets {
			target, _ := x.(map[string]any)
			if str(target, "kind") != "Deployment" {
				t.Errorf("%s: restart target kind %q, the examples restart Deployments", o, str(target, "kind"))
			} else if d, ok := byKind["Deployment"][str(target, "name")]; !ok {
				t.Errorf("%s: restart target %q names no Deployment", o, str(target, "name"))
			} else if !usesSecret(d, str(dest, "name")) {
				t.Errorf("%s: restart target %s does not use the Secret %q", o, d, str(dest, "name"))
			}
		}
	}

	for _, o := range byKind["SecretProviderClass"] {
		spec := mapAt(o.doc, "spec")
		params := mapAt(spec, "parameters")
		if str(spec, "provider") != "vault" || !strings.HasPrefix(str(params, "vaultAddress"), "https://") {
			t.Errorf("%s: want provider vault and an https vaultAddress", o)
		}
		var objs []struct {
			ObjectName string `yaml:"objectName"`
			SecretPath string `yaml:"secretPath"`
			SecretKey  string `yaml:"secretKey"`
		}
		if err := yaml.Unmarshal([]byte(str(params, "objects")), &objs); err != nil || len(objs) == 0 {
			t.Errorf("%s: parameters.objects is not a YAML list of objects: %v", o, err)
		}
		for _, obj := range objs {
			name, role := roleOf(o, obj.SecretPath)
			if role.leased {
				t.Errorf("%s: reads the leased role %q; every poll would make a lease nobody revokes", o, name)
			}
			if obj.ObjectName == "" || obj.SecretKey == "" {
				t.Errorf("%s: object %+v needs objectName and secretKey", o, obj)
			}
			for _, d := range deploymentsUsingCSI(byKind["Deployment"], o.name) {
				readsAs(d, str(podSpec(d), "serviceAccountName"), str(params, "roleName"), name)
			}
		}
		if len(deploymentsUsingCSI(byKind["Deployment"], o.name)) == 0 {
			t.Errorf("%s: no Deployment mounts it", o)
		}
	}

	injected := 0
	for _, d := range byKind["Deployment"] {
		ann := mapAt(mapAt(mapAt(mapAt(d.doc, "spec"), "template"), "metadata"), "annotations")
		if str(ann, "vault.hashicorp.com/agent-inject") != "true" {
			continue
		}
		injected++
		secrets := map[string]string{}
		for _, k := range keysOf(ann) {
			short, ok := strings.CutPrefix(k, "vault.hashicorp.com/")
			if !ok {
				continue
			}
			known := slices.Contains(injectorAnnotations, short)
			for _, prefix := range injectorPerSecret {
				if name, ok := strings.CutPrefix(short, prefix); ok && name != "" {
					known = true
					if prefix == "agent-inject-secret-" {
						secrets[name] = str(ann, k)
					}
				}
			}
			if !known {
				t.Errorf("%s: unknown injector annotation %q", d, k)
			}
		}
		if len(secrets) == 0 {
			t.Errorf("%s: injects no secret", d)
		}
		for name, path := range secrets {
			role, r := roleOf(d, path)
			tmpl := str(ann, "vault.hashicorp.com/agent-inject-template-"+name)
			if !strings.Contains(tmpl, fmt.Sprintf("secret %q", path)) || !strings.Contains(tmpl, ".Data.access_token") {
				t.Errorf("%s: the template of %q does not render .Data.access_token of %s", d, name, path)
			}
			if !r.leased && str(ann, "vault.hashicorp.com/template-static-secret-render-interval") == "" {
				t.Errorf("%s: reads the unleased role %q without template-static-secret-render-interval", d, role)
			}
			readsAs(d, str(podSpec(d), "serviceAccountName"), str(ann, "vault.hashicorp.com/role"), role)
		}
		if str(ann, "vault.hashicorp.com/agent-run-as-same-user") == "true" {
			containers, _ := podSpec(d)["containers"].([]any)
			first, _ := firstOf(containers).(map[string]any)
			if _, ok := mapAt(first, "securityContext")["runAsUser"].(int); !ok {
				t.Errorf("%s: agent-run-as-same-user needs runAsUser on the first container", d)
			}
		}
	}
	if injected == 0 {
		t.Error("no Deployment has injector annotations")
	}
}

// readManifests parses every *.yaml file of this directory, each document
// an object.
func readManifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found (%v)", err)
	}
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			meta := mapAt(doc, "metadata")
			out = append(out, object{
				file: f, apiVersion: str(doc, "apiVersion"), kind: str(doc, "kind"),
				name: str(meta, "name"), ns: str(meta, "namespace"), doc: doc,
			})
		}
	}
	return out
}

// shellCommands returns the commands of a Markdown file's sh blocks, with
// line continuations joined.
func shellCommands(text string) [][]string {
	var cmds [][]string
	in, cur := false, ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			in = !in && line == "```sh"
			continue
		case !in:
			continue
		}
		if before, ok := strings.CutSuffix(line, "\\"); ok {
			cur += before + " "
			continue
		}
		cur += line
		if fields := strings.Fields(strings.SplitN(cur, " #", 2)[0]); len(fields) > 0 {
			cmds = append(cmds, fields)
		}
		cur = ""
	}
	return cmds
}

// piwikRoles returns the roles of piwik/ that a document's sh blocks write
// (vault write piwik/roles/<name> …), and whether each is leased; a role
// written twice must be leased (or not) both times.
func piwikRoles(t *testing.T, what, text string) map[string]piwikRole {
	t.Helper()
	roles := map[string]piwikRole{}
	for _, c := range shellCommands(text) {
		if len(c) < 3 || c[0] != "vault" || c[1] != "write" {
			continue
		}
		name, ok := strings.CutPrefix(c[2], "piwik/roles/")
		if !ok {
			continue
		}
		r := piwikRole{leased: !slices.Contains(c[3:], "leased=false")}
		if prev, dup := roles[name]; dup && prev != r {
			t.Errorf("%s writes role %q as leased and as unleased", what, name)
		}
		roles[name] = r
	}
	return roles
}

// kubernetesAuthRoles returns the roles of auth/kubernetes the page writes.
func kubernetesAuthRoles(t *testing.T, text string) map[string]vaultAuthRole {
	t.Helper()
	roles := map[string]vaultAuthRole{}
	for _, c := range shellCommands(text) {
		if len(c) < 3 || c[0] != "vault" || c[1] != "write" {
			continue
		}
		name, ok := strings.CutPrefix(c[2], "auth/kubernetes/role/")
		if !ok {
			continue
		}
		var r vaultAuthRole
		for _, arg := range c[3:] {
			k, v, _ := strings.Cut(arg, "=")
			switch k {
			case "bound_service_account_names":
				r.serviceAccounts = strings.Split(v, ",")
			case "bound_service_account_namespaces":
				r.namespaces = strings.Split(v, ",")
			case "token_policies":
				r.policies = strings.Split(v, ",")
			}
		}
		roles[name] = r
	}
	return roles
}

// policyAllowsRead reports whether examples/policies/<name>.hcl grants read
// on path (exactly that path: the examples use no globs).
func policyAllowsRead(t *testing.T, name, path string) bool {
	t.Helper()
	text := readFile(t, filepath.Join("..", "policies", name+".hcl"))
	block := regexp.MustCompile(`(?s)path ` + regexp.QuoteMeta(strconv.Quote(path)) + ` \{[^}]*capabilities = \[[^\]]*"read"`)
	return block.MatchString(text)
}

// usesSecret reports whether a Deployment's pods take env vars from, or
// mount, the Secret name.
func usesSecret(d object, name string) bool {
	found := false
	var walk func(any)
	walk = func(x any) {
		switch v := x.(type) {
		case map[string]any:
			if ref := mapAt(v, "secretKeyRef"); str(ref, "name") == name {
				found = true
			}
			if str(v, "secretName") == name {
				found = true
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(podSpec(d))
	return found
}

// deploymentsUsingCSI returns the Deployments whose pods mount the
// SecretProviderClass spc.
func deploymentsUsingCSI(deployments map[string]object, spc string) []object {
	var out []object
	for _, d := range deployments {
		vols, _ := podSpec(d)["volumes"].([]any)
		for _, x := range vols {
			v, _ := x.(map[string]any)
			csi := mapAt(v, "csi")
			if str(csi, "driver") == "secrets-store.csi.k8s.io" && str(mapAt(csi, "volumeAttributes"), "secretProviderClass") == spc {
				out = append(out, d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func podSpec(d object) map[string]any {
	return mapAt(mapAt(mapAt(d.doc, "spec"), "template"), "spec")
}

// mapAt returns m[key] as a map, or an empty one.
func mapAt(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	if v == nil {
		return map[string]any{}
	}
	return v
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func firstOf(xs []any) any {
	if len(xs) == 0 {
		return nil
	}
	return xs[0]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
