// The fencer on real QEMU domains under libvirt, each result checked by an
// independent `virsh domstate` run by the test.
import anyTest, { type TestFn } from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fencer } from '../broker/fencer.js';
import { VirshToolstack } from '../broker/toolstack/virsh.js';
import { fencectl, newPublicKey, tempDir } from './helpers.js';
import { createDomain, domid, domstate, libvirtMissing, removeDomain, sweepStale, URI } from './libvirt-host.js';
import { maxInFlight, recording } from './recording.js';

const missing = await libvirtMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs real libvirt/QEMU: ${missing}`);
if (missing) console.error(`libvirt tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

const created: string[] = [];
const domain = (tag: string, start = true) => createDomain(tag, start, (name) => created.push(name));
if (!missing) await sweepStale();
anyTest.after.always(async () => {
  await Promise.all(created.map(removeDomain));
});

const virshTs = () => new VirshToolstack(URI, 15_000);
const fencer = () => new Fencer(virshTs(), { verifyMs: 20_000, pollMs: 100 });

test('off: a running domain is destroyed and confirmed shut off', async (t) => {
  const d = await domain('off');
  t.is(await domstate(d), 'running');
  const r = await fencer().do('off', d);
  t.true(r.ok, r.message);
  t.is(r.state, 'off');
  t.is(await domstate(d), 'shut off');
  t.true(r.steps.includes('destroy: done'), r.steps.join(' | '));
  t.log(`off took ${r.durationMs} ms: ${r.steps.join(' | ')}`);
});

test('off when already off: success; the destroy libvirt refuses changes nothing and the state read settles it', async (t) => {
  const d = await domain('offoff', false);
  const r = await fencer().do('off', d);
  t.true(r.ok);
  t.is(r.state, 'off');
  t.regex(r.message, /already off/);
  t.regex(r.steps.join(' | '), /^destroy: .*exit 1.*\| state: stopped \(shut off/);
  t.is(await domstate(d), 'shut off');
});

test('unknown domain: off, on, reset and status fail with "not found", never "off"', async (t) => {
  const f = fencer();
  for (const action of ['off', 'on', 'reset', 'status'] as const) {
    const r = await f.do(action, 'fbt-no-such-domain');
    t.false(r.ok, action);
    t.is(r.state, 'unknown', action);
    t.regex(r.message, /not found/, action);
  }
});

test('on: a stopped domain is started and confirmed running', async (t) => {
  const d = await domain('on', false);
  const r = await fencer().do('on', d);
  t.true(r.ok, r.message);
  t.is(r.state, 'on');
  t.is(await domstate(d), 'running');
  const again = await fencer().do('on', d);
  t.true(again.ok);
  t.regex(again.message, /already on/);
});

test('reset: verified off, then started again (a new domain id proves the restart)', async (t) => {
  const d = await domain('reset');
  const idBefore = await domid(d);
  const r = await fencer().do('reset', d);
  t.true(r.ok, r.message);
  t.true(r.started);
  t.is(r.state, 'on');
  t.is(await domstate(d), 'running');
  t.not(await domid(d), idBefore);
  const off = r.steps.findIndex((s) => s.startsWith('state: stopped'));
  const start = r.steps.indexOf('start: done');
  t.true(off >= 0 && start > off, `off confirmed before start: ${r.steps.join(' | ')}`);
});

test('status: on and off as libvirt says', async (t) => {
  const on = await domain('st-on');
  const off = await domain('st-off', false);
  const f = fencer();
  t.like(await f.do('status', on), { ok: true, state: 'on' });
  t.like(await f.do('status', off), { ok: true, state: 'off' });
});

test('ten concurrent offs on ten domains run in parallel', async (t) => {
  const names = await Promise.all(Array.from({ length: 10 }, (_, i) => domain(`par${i}`)));
  const { toolstack, calls } = recording(virshTs());
  const f = new Fencer(toolstack, { verifyMs: 30_000, pollMs: 100 });
  const t0 = performance.now();
  const results = await Promise.all(names.map((n) => f.do('off', n)));
  const wall = performance.now() - t0;
  for (const r of results) t.true(r.ok, r.message);
  for (const n of names) t.is(await domstate(n), 'shut off', n);
  const destroys = calls.filter((c) => c.op === 'destroy');
  t.is(destroys.length, 10);
  t.is(maxInFlight(destroys), 10, 'all ten destroys were in flight at once');
  const slowest = Math.max(...results.map((r) => r.durationMs));
  const sum = results.reduce((s, r) => s + r.durationMs, 0);
  t.log(`10 parallel offs: wall ${Math.round(wall)} ms, slowest ${slowest} ms, sum ${sum} ms`);
});

test('has: a running and a shut-off domain yes, an undefined name and the control domain no, each from its own state read', async (t) => {
  const on = await domain('has-on');
  const off = await domain('has-off', false);
  const { toolstack, calls } = recording(virshTs());
  const f = new Fencer(toolstack, { verifyMs: 20_000, pollMs: 100 });
  t.true(await f.has(on));
  t.true(await f.has(off));
  t.false(await f.has('fbt-no-such-domain'));
  t.false(await f.has('Domain-0'));
  // Never the host-wide list: libvirt's list takes every domain's lock, so it waits out other domains' destroys.
  t.deepEqual(
    calls.map((c) => `${c.op} ${c.domain}`),
    [`state ${on}`, `state ${off}`, 'state fbt-no-such-domain'],
  );
});

test('two concurrent requests on one domain never interleave', async (t) => {
  const d = await domain('serial');
  const { toolstack, calls } = recording(virshTs());
  const f = new Fencer(toolstack, { verifyMs: 20_000, pollMs: 100 });
  const [a, b] = await Promise.all([f.do('off', d), f.do('off', d)]);
  t.true(a.ok && b.ok);
  t.is(maxInFlight(calls.filter((c) => c.domain === d)), 1, 'never two toolstack calls on the domain at once');
  // The second destroy, after the first was confirmed, is refused by libvirt; its state read finds it off.
  t.is(calls.filter((c) => c.op === 'destroy').length, 2);
  t.regex(b.message, /already off/);
  t.is(await domstate(d), 'shut off');
});

test('fencectl domains on the real libvirt host: owners, who may fence, unowned and missing flagged', async (t) => {
  const owned = await domain('own');
  const stray = await domain('stray');
  const dir = tempDir();
  const config = join(dir, 'clusters.yaml');
  writeFileSync(
    config,
    [
      'broker:',
      '  listen: 127.0.0.1:2222',
      '  host_key: host',
      `  toolstack: { type: virsh, uri: "${URI}" }`,
      '  audit_log: audit.jsonl',
      'clusters:',
      '  blue:',
      `    domains: [${owned}, fbt-ghost]`,
      '    nodes:',
      `      n1: { key: "${newPublicKey()}", domain: ${owned} }`,
      `      n2: { key: "${newPublicKey()}", domain: fbt-ghost }`,
    ].join('\n'),
  );
  const r = await fencectl(['domains', '--config', config, '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { domain: string; state: string; cluster: string | null; may_fence: string[]; flags: string[] }[];
  t.like(rows.find((x) => x.domain === owned), { state: 'on', cluster: 'blue', may_fence: ['blue/n2'], flags: [] });
  t.like(rows.find((x) => x.domain === stray), { state: 'on', cluster: null, may_fence: [], flags: ['unowned'] });
  t.like(rows.find((x) => x.domain === 'fbt-ghost'), { state: 'missing', cluster: 'blue', flags: ['missing'] });
  const table = await fencectl(['domains', '--config', config]);
  t.regex(table.stdout, /^DOMAIN +STATE +TOOLSTACK SAYS +CLUSTER +MAY FENCE +FLAGS/);
  t.regex(table.stdout, new RegExp(`${stray} +on +running +- +- +unowned`));
  t.regex(table.stdout, /owned but not on this host/);
});
