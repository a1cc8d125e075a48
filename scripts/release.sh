#!/usr/bin/env bash
# Builds version-stamped plugin binaries for every supported platform into
# dist/, writes SHA256SUMS, and prints the `vault plugin register` line for
# each binary.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:?set VERSION, e.g. VERSION=v0.1.0}"
if [[ ! "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$ ]]; then
  echo "release: VERSION must be a semantic version with a leading v, got '$version'" >&2
  exit 1
fi
name=vault-plugin-secrets-piwik
module=github.com/piwik-vault/vault-plugin-secrets-piwik
platforms=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64)

rm -rf dist
mkdir -p dist
for platform in "${platforms[@]}"; do
  os="${platform%/*}" arch="${platform#*/}"
  ext=""
  [[ "$os" == windows ]] && ext=".exe"
  out="dist/${name}_${version}_${os}_${arch}${ext}"
  echo "==> building $out"
  CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath \
    -ldflags "-s -w -X ${module}.Version=${version}" -o "$out" "./cmd/${name}"
done

(cd dist && sha256sum "${name}"_* > SHA256SUMS)
echo "==> dist/SHA256SUMS"
cat dist/SHA256SUMS

echo
echo "==> register a binary after copying it into Vault's plugin_directory as '${name}' (or pass -command=<file name>):"
while read -r sum file; do
  echo "vault plugin register -sha256=${sum} -version=${version} -command=${file} secret ${name}"
done < dist/SHA256SUMS
