#!/usr/bin/env bash
# The reviewer's loop for policies/: format, strict check, unit tests with
# 100% coverage of fencing.rego. Exit 0 only when all hold.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
opa=$(bash "$root/scripts/opa.sh")
cd "$root"
unformatted=$("$opa" fmt --list policies/)
if [ -n "$unformatted" ]; then echo "rego-check: not opa-fmt formatted: $unformatted (run: $opa fmt -w policies/)" >&2; exit 1; fi
"$opa" check --strict policies/
"$opa" test policies/ -v
# OPA style: lines within 120 characters.
long=$(awk 'length > 120 {print FILENAME ":" FNR}' policies/*.rego)
if [ -n "$long" ]; then echo "rego-check: lines over 120 characters: $long" >&2; exit 1; fi
cov=$("$opa" test policies/ --coverage --format json | node -e '
  const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const f = r.files["policies/fencing.rego"];
  const miss = (f.not_covered || []).map(x => `policies/fencing.rego:${x.start.row}`).join(" ");
  console.log(`${f.coverage} ${miss}`);')
echo "rego-check: fencing.rego coverage ${cov%% *}%" >&2
if [ "${cov%% *}" != "100" ]; then echo "rego-check: lines not covered: ${cov#* }" >&2; exit 1; fi
# The reviewer's table in policies/README.md matches the rules' METADATA, and
# every deny rule has its code, title and test_deny_<code>.
node "$root/dist/broker/policy/checklist-cli.js" --check
