#!/usr/bin/env bash
# Starts a throwaway Vault dev server with this plugin mounted at piwik/,
# configured against the local Piwik PRO stand-in (or a real account when
# PIWIK_URL, PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET are all set), with one
# role "reporting". Run by `make dev` after it built the plugin and the
# stand-in; stop with `make dev-stop`. Everything it writes lives in .dev/.
#
# The Vault it runs is, in this order: VAULT_BINARY; else `vault` on PATH;
# else the pinned release of tools/vault, built into bin/vault by
# `make vault` (11-20 minutes and about 4.6 GB of memory the first time).
# An installed Vault is used only when it is a release the plugin supports
# (min_vault below, the oldest release `make compat` tests); otherwise the
# script says so and builds the pinned one.
#
# Environment:
#   VAULT_BINARY    the Vault binary to run (default: `vault` on PATH)
#   VAULT_DEV_PORT  Vault's port on 127.0.0.1 (default 8200)
#   STANDIN_PORT    the stand-in's port on 127.0.0.1 (default 8210)
#   VERSION         the version the plugin was built with (default: the top entry of CHANGELOG.md)
#   PIWIK_URL, PIWIK_CLIENT_ID, PIWIK_CLIENT_SECRET
#                   use this Piwik PRO account instead of the stand-in
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

vault_port="${VAULT_DEV_PORT:-8200}"
standin_port="${STANDIN_PORT:-8210}"
# A dev server also listens on the next port, for cluster traffic.
if ((standin_port == vault_port || standin_port == vault_port + 1)); then
	die "STANDIN_PORT ($standin_port) must be neither VAULT_DEV_PORT ($vault_port) nor the port after it, which the dev server takes for cluster traffic"
fi
version="${VERSION:-$(make -s -C "$root" version)}"
plugin_name="vault-plugin-secrets-piwik"
# The file name in the plugin directory, as in a release zip.
plugin_command="${plugin_name}_${version}"
plugin_bin="$root/bin/$plugin_name"
standin_bin="$root/bin/piwik-standin"
# The oldest Vault release the plugin is tested with (README, Compatibility).
min_vault="1.19.4"
pinned_vault="$(sed -n 's|^require github.com/hashicorp/vault v||p' "$root/tools/vault/go.mod")"

[[ -x "$plugin_bin" ]] || die "$plugin_bin is missing: run 'make dev' (it builds bin/ first)"

# pick_vault sets vault_bin: an installed Vault of a supported release, or
# else the pinned one, built first when bin/vault is missing or stale.
pick_vault() {
	local candidate="" from="" release=""
	if [[ -n "${VAULT_BINARY:-}" ]]; then
		candidate="$(command -v "$VAULT_BINARY" || printf '%s' "$VAULT_BINARY")" from="VAULT_BINARY"
	elif candidate="$(command -v vault)"; then
		from="PATH"
	fi
	if [[ -n "$candidate" ]]; then
		release="$(vault_release "$candidate")"
		if [[ -z "$release" ]]; then
			step "$candidate (from $from) is not a Vault binary that names its release"
		elif version_at_least "$release" "$min_vault"; then
			vault_bin="$candidate"
			step "using Vault v$release from $from: $vault_bin"
			return 0
		else
			step "Vault v$release from $from ($candidate) is older than v$min_vault, the oldest release the plugin supports"
		fi
	else
		step "no installed Vault: VAULT_BINARY is unset and there is no vault on PATH"
	fi

	vault_bin="$root/bin/vault"
	if "${MAKE:-make}" -s -q -C "$root" vault >/dev/null 2>&1; then
		step "using the pinned Vault v$pinned_vault, built before: $vault_bin"
		return 0
	fi
	step "building the pinned Vault v$pinned_vault from source into $vault_bin"
	cat <<-EOF
	    The first build downloads about 4 GB of Go modules and compiles for
	    11-20 minutes on two cores, with up to about 4.6 GB of memory; later
	    builds come from Go's caches. To skip it, stop now (Ctrl-C) and put
	    Vault v$min_vault or newer on PATH, or point VAULT_BINARY at one.
	EOF
	run_or_die "building Vault failed" "${MAKE:-make}" -C "$root" vault
}

use_standin=true
if [[ -n "${PIWIK_URL:-}" && -n "${PIWIK_CLIENT_ID:-}" && -n "${PIWIK_CLIENT_SECRET:-}" ]]; then
	use_standin=false
elif [[ -n "${PIWIK_URL:-}${PIWIK_CLIENT_ID:-}${PIWIK_CLIENT_SECRET:-}" ]]; then
	die "set all of PIWIK_URL, PIWIK_CLIENT_ID and PIWIK_CLIENT_SECRET to use a real account, or none to use the stand-in"
fi
if $use_standin; then
	[[ -x "$standin_bin" ]] || die "$standin_bin is missing: run 'make dev' (it builds bin/ first)"
fi

if ! $use_standin; then
	piwik_url="$PIWIK_URL"
	piwik_client_id="$PIWIK_CLIENT_ID"
	piwik_client_secret="$PIWIK_CLIENT_SECRET"
	# The servers started below inherit this environment and would hold
	# the secret in theirs for as long as they run: only config gets it.
	unset PIWIK_CLIENT_SECRET
fi

pick_vault

# On failure, say how to clean up what did start.
trap 'rc=$?; ((rc == 0)) || printf "what did start keeps running; stop it with: make dev-stop\n" >&2' EXIT

step "stopping any previous dev run"
"$root/scripts/dev-stop.sh"

dev="$root/.dev"
step "preparing $dev"
rm -rf "$dev"
mkdir -p "$dev/plugins" "$dev/home"
chmod 700 "$dev"
cp "$plugin_bin" "$dev/plugins/$plugin_command"
chmod 755 "$dev/plugins/$plugin_command"

root_token="$(random_string)"
printf '%s\n' "$root_token" >"$dev/root-token"
chmod 600 "$dev/root-token"

export VAULT_ADDR="http://127.0.0.1:$vault_port"
export VAULT_TOKEN="$root_token"
# `vault status` exits 1 when nothing answers, 0 or 2 when a Vault does.
rc=0
"$vault_bin" status >/dev/null 2>&1 || rc=$?
if ((rc != 1)); then
	die "a Vault already answers at $VAULT_ADDR; stop it or pick another port with VAULT_DEV_PORT"
fi

step "starting Vault dev server on $VAULT_ADDR (log: $dev/vault.log)"
# The root token goes in through the environment, not the command line.
# The dev server saves it through the token helper in $HOME: keep it away
# from the user's own ~/.vault-token.
HOME="$dev/home" VAULT_DEV_ROOT_TOKEN_ID="$root_token" \
	start_background "$dev/vault.pid" "$dev/vault.log" \
	"$vault_bin" server -dev \
	-dev-listen-address="127.0.0.1:$vault_port" \
	-dev-plugin-dir="$dev/plugins"

step "waiting for Vault to be unsealed"
wait_until 30 "Vault did not come up; read $dev/vault.log" \
	vault_ready "$vault_bin" "$dev/vault.pid"

if $use_standin; then
	piwik_client_id="dev-client"
	piwik_client_secret="$(random_string)"
	step "starting the Piwik PRO stand-in on 127.0.0.1:$standin_port (log: $dev/standin.log)"
	PIWIK_STANDIN_CLIENT_SECRET="$piwik_client_secret" start_background "$dev/standin.pid" "$dev/standin.log" \
		"$standin_bin" -listen "127.0.0.1:$standin_port" -client-id "$piwik_client_id" \
		-addr-file "$dev/standin.addr"
	wait_until 15 "the stand-in did not start; read $dev/standin.log" \
		file_ready "$dev/standin.addr" "$dev/standin.pid"
	piwik_url="$(cat "$dev/standin.addr")"
else
	step "using the Piwik PRO account at $piwik_url"
fi

logs="$dev/vault.log"
if $use_standin; then
	logs="$logs and $dev/standin.log"
fi

step "registering $plugin_name $version (file $plugin_command)"
sha="$(sha256_of "$dev/plugins/$plugin_command")"
run_or_die "registering the plugin failed (does VERSION=$version match the build? read $dev/vault.log)" \
	"$vault_bin" plugin register -sha256="$sha" -version="$version" -command="$plugin_command" secret "$plugin_name"

step "enabling it at piwik/"
run_or_die "enabling the plugin failed; read $dev/vault.log" \
	"$vault_bin" secrets enable -path=piwik -plugin-version="$version" "$plugin_name"

step "writing piwik/config (url=$piwik_url client_id=$piwik_client_id)"
# The secret goes through stdin so that it never shows in a process list.
printf '%s' "$piwik_client_secret" | run_or_die \
	"writing piwik/config failed; read $logs" \
	"$vault_bin" write piwik/config url="$piwik_url" client_id="$piwik_client_id" client_secret=-

step "writing role piwik/roles/reporting"
run_or_die "writing the role failed; read $dev/vault.log" \
	"$vault_bin" write piwik/roles/reporting ttl=0

step "vault read piwik/creds/reporting"
run_or_die "reading creds failed; read $dev/vault.log" \
	"$vault_bin" read piwik/creds/reporting

# The shell needs PATH only when its own `vault` is another binary.
path_hint=""
if [[ "$(command -v vault || true)" != "$vault_bin" ]]; then
	path_hint="
  export PATH=\"$(dirname "$vault_bin"):\$PATH\""
fi

cat <<EOF

Vault dev server is running with the Piwik PRO plugin at piwik/.
Point your shell at it:

  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN="\$(cat "$dev/root-token")"${path_hint}
  vault read piwik/creds/reporting

Logs: $logs
Stop: make dev-stop
EOF
