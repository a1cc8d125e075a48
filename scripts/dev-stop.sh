#!/usr/bin/env bash
# Stops what scripts/dev.sh started (the Vault dev server with its plugin
# processes, and the Piwik PRO stand-in), by the pid files in .dev/.
# Safe to run when nothing is running. Leaves .dev/ (logs) in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

dev="$root/.dev"
# The marks are arguments dev.sh gives each process, naming this .dev/.
stop_pidfile "Vault dev server" "$dev/vault.pid" "-dev-plugin-dir=$dev/plugins"
stop_pidfile "Piwik PRO stand-in" "$dev/standin.pid" "$dev/standin.addr"
rm -f "$dev/standin.addr"
step "dev environment stopped (logs stay in $dev)"
