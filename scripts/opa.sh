#!/usr/bin/env bash
# Prints the path of an `opa` binary of the pinned version (package.json
# config.opaVersion). Order: $OPA, `opa` on PATH, the repo's .tools folder; if
# none matches, installs it there with `go install` (pure Go, CGO_ENABLED=0).
# With --no-install it only looks. Progress goes to stderr, the path to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(node -p "require('$root/package.json').config.opaVersion")
no_install=0
[ "${1:-}" = "--no-install" ] && no_install=1

version_of() { "$1" version 2>/dev/null | awk '/^Version:/ {print $2; exit}'; }

for cand in "${OPA:-}" "$(command -v opa || true)" "$root/.tools/opa/v$want/opa"; do
  [ -n "$cand" ] && [ -x "$cand" ] || continue
  if [ "$(version_of "$cand")" = "$want" ]; then echo "$cand"; exit 0; fi
  [ "$cand" = "${OPA:-}" ] && echo "opa.sh: \$OPA=$cand is not OPA $want; ignoring it" >&2
done

if [ "$no_install" = 1 ]; then
  echo "opa.sh: OPA $want not found (set \$OPA, put opa $want on PATH, or run 'npm run setup')" >&2
  exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
opa.sh: OPA $want is needed and Go is not installed to build it.
Install one of:
  - Go >= 1.24, then re-run (it runs: CGO_ENABLED=0 go install github.com/open-policy-agent/opa@v$want)
  - the OPA $want binary from https://github.com/open-policy-agent/opa/releases, then export OPA=/path/to/opa
MSG
  exit 1
fi
dest="$root/.tools/opa/v$want"
mkdir -p "$dest"
echo "opa.sh: installing OPA $want into $dest (go install, about a minute)" >&2
if ! CGO_ENABLED=0 GOBIN="$dest" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@v$want" >&2; then
  echo "opa.sh: 'go install github.com/open-policy-agent/opa@v$want' failed; see above. Set \$OPA to an OPA $want binary instead." >&2
  exit 1
fi
[ "$(version_of "$dest/opa")" = "$want" ] || { echo "opa.sh: installed opa does not report version $want" >&2; exit 1; }
echo "$dest/opa"
