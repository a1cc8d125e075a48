// Package e2e tests the plugin end to end: the real Vault binary (server,
// CLI, Agent and Proxy) runs the built plugin against the Piwik PRO
// stand-in. Some tests also run, as written, the commands that docs/api.md
// and SECURITY.md show (with bash, curl and jq).
//
// Run it with `make e2e`, which builds the three binaries and passes their
// paths in VAULT_BINARY, PLUGIN_BINARY and STANDIN_BINARY. Without them the
// tests skip, except when CI=true, where they fail. PLUGIN_VERSION, when
// set, is the version the plugin was built with; otherwise the tests ask
// Vault what version the binary reports. E2E_KEEP=1 keeps the logs of a
// passing run (a failing run always keeps them).
package e2e
