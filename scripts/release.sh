#!/usr/bin/env bash
# Builds the release with goreleaser (.goreleaser.yaml), pinned and run
# through `go run`, as a snapshot: nothing is tagged or published. The
# SBOMs are made by CycloneDX's cyclonedx-gomod, pinned too, installed into
# a temporary directory on PATH. Then prints the `vault plugin register`
# line of each binary. Run by `make release`.
#
# Environment:
#   VERSION          version to stamp, with a leading v (required; make
#                    release passes the top entry of CHANGELOG.md
#                    unless told otherwise)
#   GPG_FINGERPRINT  key that signs SHA256SUMS (gpg --local-user); when
#                    unset, SHA256SUMS is not signed
#   GNUPGHOME        gpg's home, if not ~/.gnupg
#   DIST             output directory (default dist)
#   GO               the go command (default go)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
cd "$root"

goreleaser="github.com/goreleaser/goreleaser/v2@v2.15.1"
cyclonedx="github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"
name="vault-plugin-secrets-piwik"
go_cmd="${GO:-go}"
version="${VERSION:?set VERSION, e.g. VERSION=v0.1.0}"
dist="${DIST:-dist}"

[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] ||
	die "VERSION must be a semantic version with a leading v, got '$version'"
[[ "$dist" != *[\|\&\\]* ]] || die "DIST must not contain |, & or \\ (it goes into a sed replacement)"
command -v jq >/dev/null || die "jq is required (apt-get install jq)"
grep -qx 'dist: dist' .goreleaser.yaml || die ".goreleaser.yaml has no line 'dist: dist' to point at $dist"

skip=()
if [[ -n "${GPG_FINGERPRINT:-}" ]]; then
	command -v gpg >/dev/null || die "gpg is required to sign (apt-get install gnupg)"
	step "SHA256SUMS will be signed with GPG key $GPG_FINGERPRINT"
else
	step "GPG_FINGERPRINT is not set: SHA256SUMS will NOT be signed (no SHA256SUMS.sig)"
	skip=(--skip=sign)
fi

tools="$(mktemp -d "${TMPDIR:-/tmp}/piwik-release-tools.XXXXXX")"
trap 'rm -rf "$tools"' EXIT
step "installing $cyclonedx into $tools"
GOBIN="$tools" "$go_cmd" install "$cyclonedx"
export PATH="$tools:$PATH"

step "goreleaser ($goreleaser): snapshot release $version into $dist"
# The first run builds goreleaser itself (a few minutes); Go caches it.
sed "s|^dist: dist\$|dist: $dist|" .goreleaser.yaml |
	VERSION="$version" "$go_cmd" run "$goreleaser" release --snapshot --clean --config - ${skip[@]+"${skip[@]}"}

step "$dist/SHA256SUMS"
cat "$dist/SHA256SUMS"

printf '\n'
step "register each binary after copying it into Vault's plugin_directory under its own name:"
jq -r '.[] | select(.type == "Binary") | [.goos, .goarch, .path] | @tsv' "$dist/artifacts.json" | sort |
	while IFS=$'\t' read -r os arch path; do
		sha="$(sha256_of "$path")"
		printf '%s/%s:\n  vault plugin register -sha256=%s -version=%s -command=%s secret %s\n' \
			"$os" "$arch" "$sha" "$version" "$(basename "$path")" "$name"
	done
