// fencectl check says why it could not run opa on the Rego sources: $OPA
// naming a missing or non-executable file, and an opa that fails without a word.
import test from 'ava';
import { execa } from 'execa';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { newPublicKey, tempDir } from '../helpers.js';

const dir = tempDir('fb-check-opa-');
const config = join(dir, 'clusters.yaml');
// No policy_bundle: check runs opa on the checkout's policies/.
writeFileSync(config, ['broker:', '  listen: 127.0.0.1:0', '  host_key: host_ed25519', '  toolstack: { type: sim, state: sim.json }', '  audit_log: audit.jsonl', 'clusters:', '  blue:', '    domains: [blue-1]', `    nodes: { blue-1: { key: "${newPublicKey('b')}" } }`, ''].join('\n'));

const check = (opa: string) => execa('node', [projectPath('dist', 'broker', 'fencectl.js'), 'check', '--config', config], { reject: false, cwd: projectPath(), env: { OPA: opa } });

test('$OPA naming a missing file: check fails and says so', async (t) => {
  const r = await check(join(dir, 'no-such-opa'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`\\$OPA=${join(dir, 'no-such-opa')}: no such file; point \\$OPA at the opa binary`));
});

test('$OPA naming a file that is not executable: check fails and says so', async (t) => {
  const file = join(dir, 'not-executable');
  writeFileSync(file, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
  const r = await check(file);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /is not executable/);
});

test('an opa that exits non-zero with no output: check names it and its exit code, not an empty "opa check failed:"', async (t) => {
  const file = join(dir, 'mute-opa');
  writeFileSync(file, '#!/bin/sh\nexit 3\n');
  chmodSync(file, 0o755);
  const r = await check(file);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`opa check failed: ${file} exited 3 with no output`));
});

test('an opa killed by a signal: check says so', async (t) => {
  const file = join(dir, 'killed-opa');
  writeFileSync(file, '#!/bin/sh\nkill -KILL $$\n');
  chmodSync(file, 0o755);
  const r = await check(file);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`opa check failed: cannot run ${file}: killed by SIGKILL`));
});
