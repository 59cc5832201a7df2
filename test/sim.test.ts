// The SIMULATED host (sim toolstack) under the fencer, and `fencectl domains`
// on it, including the flagged cases.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fencer } from '../broker/fencer.js';
import { SimToolstack } from '../broker/toolstack/sim.js';
import { fencectl, newPublicKey, tempDir } from './helpers.js';

const sim = (domains: Record<string, string>) => {
  const file = join(tempDir(), 'sim.json');
  writeFileSync(file, JSON.stringify({ domains }));
  return { file, fencer: new Fencer(new SimToolstack(file), { verifyMs: 500, pollMs: 20 }) };
};
const power = (file: string, d: string) => (JSON.parse(readFileSync(file, 'utf8')) as { domains: Record<string, string> }).domains[d];

test('sim: off, on, reset, status and not found follow the fencing semantics', async (t) => {
  const { file, fencer } = sim({ a: 'running', b: 'shut off' });
  t.like(await fencer.do('status', 'a'), { ok: true, state: 'on' });
  t.like(await fencer.do('off', 'a'), { ok: true, state: 'off' });
  t.is(power(file, 'a'), 'shut off');
  t.regex((await fencer.do('off', 'a')).message, /already off/);
  t.like(await fencer.do('on', 'b'), { ok: true, state: 'on' });
  t.is(power(file, 'b'), 'running');
  t.like(await fencer.do('reset', 'b'), { ok: true, state: 'on', started: true });
  t.like(await fencer.do('off', 'zz'), { ok: false, state: 'unknown' });
});

test('sim: a state file seeded from the config when missing; an unreadable one is unknown, never off', async (t) => {
  const file = join(tempDir(), 'new', 'sim.json');
  const ts = new SimToolstack(file, ['x', 'y']);
  t.deepEqual((await ts.list()).map((d) => `${d.name}:${d.observed}`), ['x:running', 'y:running']);
  writeFileSync(file, '{not json');
  const r = await new Fencer(ts, { verifyMs: 200, pollMs: 20 }).do('off', 'x');
  t.false(r.ok);
  t.is(r.state, 'unknown');
});

test('fencectl domains on the sim: table and JSON, unowned running and missing owned domains flagged', async (t) => {
  const dir = tempDir();
  writeFileSync(join(dir, 'sim.json'), JSON.stringify({ domains: { 'blue-1': 'running', 'blue-2': 'shut off', stray: 'running', parked: 'shut off' } }));
  writeFileSync(
    join(dir, 'clusters.yaml'),
    [
      'broker:',
      '  listen: 127.0.0.1:2222',
      '  host_key: host',
      '  toolstack: { type: sim, state: sim.json }',
      '  audit_log: audit.jsonl',
      'clusters:',
      '  blue:',
      '    domains: [blue-1, blue-2, blue-3]',
      '    nodes:',
      `      blue-1: { key: "${newPublicKey()}" }`,
      `      blue-2: { key: "${newPublicKey()}" }`,
      '  red:',
      '    domains: [red-1]',
      '    nodes:',
      `      red-1: { key: "${newPublicKey()}" }`,
    ].join('\n'),
  );
  const config = join(dir, 'clusters.yaml');
  const json = await fencectl(['domains', '--config', config, '--json']);
  t.is(json.exitCode, 0, json.stderr);
  t.deepEqual(JSON.parse(json.stdout), [
    { domain: 'blue-1', state: 'on', raw: 'running', cluster: 'blue', may_fence: ['blue/blue-2'], flags: [] },
    { domain: 'blue-2', state: 'off', raw: 'shut off', cluster: 'blue', may_fence: ['blue/blue-1'], flags: [] },
    { domain: 'blue-3', state: 'missing', raw: 'not on this host', cluster: 'blue', may_fence: ['blue/blue-1', 'blue/blue-2'], flags: ['missing'] },
    { domain: 'red-1', state: 'missing', raw: 'not on this host', cluster: 'red', may_fence: [], flags: ['missing'] },
    { domain: 'parked', state: 'off', raw: 'shut off', cluster: null, may_fence: [], flags: [] },
    { domain: 'stray', state: 'on', raw: 'running', cluster: null, may_fence: [], flags: ['unowned'] },
  ]);
  const only = await fencectl(['domains', '--config', config, '--cluster', 'red', '--json']);
  t.deepEqual((JSON.parse(only.stdout) as { domain: string }[]).map((r) => r.domain), ['red-1']);
  const table = await fencectl(['domains', '--config', config]);
  t.is(table.exitCode, 0);
  t.regex(table.stdout, /^stray +on +running +- +- +unowned$/m);
  t.regex(table.stdout, /6 domains on sim \(simulated host\); 1 running and owned by no cluster; 2 owned but not on this host/);
  const bad = await fencectl(['domains', '--config', config, '--cluster', 'green']);
  t.is(bad.exitCode, 2);
});
