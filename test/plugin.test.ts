// The guest plugin through the real clients: cluster-glue's `stonith` CLI,
// Pacemaker's `fence_legacy`, the fence_broker agent as Pacemaker calls it
// (stdin), xmllint against fence-agents' metadata.rng; then end to end on real
// QEMU domains under libvirt with two tenant clusters.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from './broker-daemon.js';
import { tempDir } from './helpers.js';
import { createDomain, domstate, libvirtMissing, removeDomain, sweepStale, URI } from './libvirt-host.js';
import { clientsMissing, EXTERNAL, fenceAgent, fenceLegacy, installPlugin, params, stonith, uninstallPlugin, FENCE_AGENT } from './plugin-host.js';

const missing = (await clientsMissing()) ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs the real clients and libvirt: ${missing}`);
if (missing) console.error(`plugin tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let d: Daemon;
anyTest.before(async () => {
  if (missing) return;
  await installPlugin();
  d = await startDaemon({
    clusters: {
      blue: { domains: ['blue-1', 'blue-2', 'Blue-Caps'], nodes: { 'blue-1': 'blue-1' } },
      red: { domains: ['red-1', 'red-2'], nodes: { 'red-a': 'red-1' } },
    },
    simDomains: { 'blue-1': 'running', 'blue-2': 'running', 'Blue-Caps': 'running', 'red-1': 'running', 'red-2': 'running' },
  });
});
anyTest.after.always(async () => {
  if (missing) return;
  await d?.stop();
  uninstallPlugin();
});

test('install puts both faces where Pacemaker and cluster-glue look, not group/other-writable', async (t) => {
  const { statSync } = await import('node:fs');
  for (const f of [FENCE_AGENT, EXTERNAL]) t.is(statSync(f).mode & 0o777, 0o755, f);
  const list = await execa('stonith', ['-L']);
  t.regex(String(list.stdout), /^external\/fence-broker$/m);
});

test('stonith -n and -m: parameter names, and metadata that is well-formed XML', async (t) => {
  const n = await stonith({}, ['-n']);
  t.is(n.exitCode, 0, n.stderr);
  t.regex(n.stdout, /ip +ipport +username +identity_file +host_key_fingerprint +broker_timeout/);
  const m = await stonith({}, ['-m']);
  t.is(m.exitCode, 0);
  t.regex(m.stdout, /<parameter name="host_key_fingerprint" unique="0" required="1">/);
  const lint = await execa('xmllint', ['--noout', '-'], { input: m.stdout, reject: false });
  t.is(lint.exitCode, 0, lint.stderr);
});

test('stonith -l lists only the caller\'s own domains; -S reports the device up', async (t) => {
  const l = await stonith(params(d, 'red-a'), ['-l']);
  t.is(l.exitCode, 0, l.stderr);
  t.deepEqual(l.stdout.trim().split(/\s+/), ['red-1', 'red-2']);
  const s = await stonith(params(d, 'red-a'), ['-S']);
  t.is(s.exitCode, 0, s.stderr);
});

test('stonith -T off/on/reset of an own domain; the sim follows', async (t) => {
  const p = params(d, 'blue-1');
  t.is((await stonith(p, ['-T', 'off', 'blue-2'])).exitCode, 0);
  t.is(d.sim()['blue-2'], 'shut off');
  t.is((await stonith(p, ['-T', 'on', 'blue-2'])).exitCode, 0);
  t.is(d.sim()['blue-2'], 'running');
  t.is((await stonith(p, ['-T', 'reset', 'blue-2'])).exitCode, 0);
  t.is(d.sim()['blue-2'], 'running');
  // cluster-glue lower-cases host names; the plugin finds the domain it meant
  // from the caller's list first, so no request is refused on the way.
  const before = d.audit().length;
  t.is((await stonith(p, ['-T', 'off', 'Blue-Caps'])).exitCode, 0);
  t.is(d.sim()['Blue-Caps'], 'shut off');
  const lines = d.audit().slice(before);
  t.deepEqual(lines.map((l) => l.decision), lines.map(() => 'allow'), 'no deny line for a mixed-case fence');
  t.true(lines.some((l) => l.action === 'off' && l.target === 'Blue-Caps'));
});

test('stonith on another tenant\'s domain, and names off the pattern, fail and change nothing', async (t) => {
  const p = params(d, 'blue-1');
  const before = d.audit().length;
  const foreign = await stonith(p, ['-T', 'off', 'red-1']);
  t.not(foreign.exitCode, 0);
  t.is(d.sim()['red-1'], 'running');
  // Survives cluster-glue's sh -c and reaches the plugin as one word off the pattern.
  const odd = await stonith(p, ['-T', 'off', 'red-1*x']);
  t.not(odd.exitCode, 0);
  const lines = d.audit().slice(before);
  const denied = lines.filter((l) => l.target === 'red-1');
  t.is(denied.length, 1, 'the foreign request was audited once');
  t.like(denied[0], { cluster: 'blue', action: 'off', decision: 'deny' });
  t.false(lines.some((l) => String(l.command).includes('*')), 'the off-pattern name never reached the broker');
});

test('Pacemaker\'s fence_legacy path drives the external plugin', async (t) => {
  const p = params(d, 'red-a');
  const r = await fenceLegacy(p, { nodename: 'red-2', action: 'off' });
  t.is(r.exitCode, 0, r.stdout + r.stderr);
  t.is(d.sim()['red-2'], 'shut off');
  const list = await fenceLegacy(p, { action: 'list' });
  t.is(list.exitCode, 0);
  t.regex(list.stdout, /red-1/);
  t.notRegex(list.stdout, /blue/);
  const foreign = await fenceLegacy(p, { nodename: 'blue-1', action: 'off' });
  t.is(foreign.exitCode, 1);
  t.is(d.sim()['blue-1'], 'running');
});

test('fence_broker metadata validates against fence-agents\' metadata.rng (xmllint)', async (t) => {
  const meta = await execa(FENCE_AGENT, ['-o', 'metadata']);
  const file = join(tempDir(), 'meta.xml');
  writeFileSync(file, String(meta.stdout));
  const r = await execa('xmllint', ['--noout', '--relaxng', '/usr/share/cluster/relaxng/metadata.rng', file], { reject: false });
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stderr), /validates/);
  const stdin = await fenceAgent({}, { action: 'metadata' });
  t.is(stdin.stdout, String(meta.stdout));
});

test('fence_broker via stdin as Pacemaker calls it: status, off, on, reboot, list, list-status, monitor, validate-all', async (t) => {
  const p = params(d, 'red-a');
  const on = await fenceAgent(p, { action: 'status', port: 'red-1', nodename: 'red-1' });
  t.is(on.exitCode, 0, `on → 0: ${on.stdout}${on.stderr}`);
  t.is((await fenceAgent(p, { action: 'off', plug: 'red-2' })).exitCode, 0);
  const st = await fenceAgent(p, { action: 'status', plug: 'red-2' });
  t.is(st.exitCode, 2, 'off → 2');
  t.regex(st.stdout, /Status: OFF/);
  t.is((await fenceAgent(p, { action: 'on', port: 'red-2' })).exitCode, 0);
  const self = await fenceAgent(p, { action: 'reboot', port: 'red-1' });
  t.is(self.exitCode, 1, 'a node may not reset itself');
  t.regex(self.stderr, /self_fence/);
  t.is(d.sim()['red-1'], 'running');
  t.is((await fenceAgent(p, { action: 'reboot', port: 'red-2' })).exitCode, 0);
  t.is(d.sim()['red-2'], 'running');
  t.is((await fenceAgent(p, { port: 'red-2' })).exitCode, 0, 'reboot is the default action');
  const list = await fenceAgent(p, { action: 'list' });
  t.is(list.stdout, 'red-1,\nred-2,'); // execa drops the final newline
  const ls = await fenceAgent(p, { action: 'list-status' });
  t.is(ls.stdout, 'red-1,,on\nred-2,,on');
  t.is((await fenceAgent(p, { action: 'monitor' })).exitCode, 0);
  t.is((await fenceAgent(p, { action: 'validate-all', plug: 'red-1' })).exitCode, 0);
  const bad = await fenceAgent({ ...p, identity_file: '/nonexistent' }, { action: 'validate-all', plug: 'red-1' });
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /identity_file \/nonexistent does not exist/);
  const flags = await execa(FENCE_AGENT, ['-o', 'status', '-n', 'red-1', '-a', p.ip as string, '-k', p.identity_file as string, '--host-key-fingerprint', d.fingerprint], { reject: false });
  t.is(flags.exitCode, 0, String(flags.stderr));
  const foreign = await fenceAgent(p, { action: 'off', plug: 'blue-1' });
  t.is(foreign.exitCode, 1);
  t.is(d.sim()['blue-1'], 'running');
  const injected = await fenceAgent(p, { action: 'off', plug: 'red-1;id' });
  t.is(injected.exitCode, 1);
  t.regex(injected.stderr, /does not match/);
  const unknown = await fenceAgent(p, { action: 'status', plug: 'red-1', bogus: '1' });
  t.regex(unknown.stderr, /Ignoring unknown option 'bogus=1'/);
  t.is(unknown.exitCode, 0);
});

test('host key pinning: a broker with another host key is refused before anything is sent', async (t) => {
  const wrong = 'SHA256:' + 'A'.repeat(43);
  const before = d.audit().length;
  const r = await fenceAgent(params(d, 'red-a', wrong), { action: 'off', plug: 'red-1' });
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /host key SHA256:\S+ does not match the pinned/);
  t.is(d.audit().length, before);
  t.is(d.sim()['red-1'], 'running');
});

test('several brokers: off succeeds where one host has the domain and the other positively lacks it; an unreachable broker fails it', async (t) => {
  // A second host whose broker knows the same tenancy and node key, but does not have red-2.
  const other = await startDaemon({
    clusters: { red: { domains: ['red-1', 'red-2'], nodes: { 'red-a': 'red-1' } } },
    simDomains: { 'red-1': 'shut off' },
    reuseKeys: { 'red-a': d.key('red-a') },
  });
  try {
    const both = {
      ...params(d, 'red-a'),
      ip: `127.0.0.1:${d.port},127.0.0.1:${other.port}`,
      host_key_fingerprint: `${d.fingerprint},${other.fingerprint}`,
    };
    t.is((await fenceAgent(both, { action: 'on', plug: 'red-2' })).exitCode, 0);
    const off = await fenceAgent(both, { action: 'off', plug: 'red-2' });
    t.is(off.exitCode, 0, off.stderr);
    t.is(d.sim()['red-2'], 'shut off');
    t.is(other.sim()['red-2'], undefined);
    t.is((await fenceAgent(both, { action: 'on', plug: 'red-2' })).exitCode, 0);
    // The second host cannot be asked: the domain might run there, so no success.
    const closed = { ...both, ip: `127.0.0.1:${d.port},127.0.0.1:1` };
    const r = await fenceAgent(closed, { action: 'off', plug: 'red-2' });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /127\.0\.0\.1:1: /);
    // Only one host's fingerprint pinned: the other broker is refused, so no success either.
    const onePinned = { ...both, host_key_fingerprint: d.fingerprint };
    const p = await fenceAgent(onePinned, { action: 'status', plug: 'red-2' });
    t.is(p.exitCode, 1);
    t.regex(p.stderr, /does not match the pinned/);
  } finally {
    await other.stop();
  }
});

test('end to end on real QEMU domains: each tenant fences its own; every attempt on the other tenant\'s domain is refused and audited, the domain untouched', async (t) => {
  await sweepStale();
  const names: string[] = [];
  const mk = (tag: string) => createDomain(tag, true, (n) => names.push(n));
  const [b1, b2, r1, r2] = await Promise.all([mk('e2e-b1'), mk('e2e-b2'), mk('e2e-r1'), mk('e2e-r2')]);
  const host = await startDaemon({
    toolstack: `{ type: virsh, uri: "${URI}" }`,
    clusters: {
      blue: { domains: [b1 as string, b2 as string], nodes: { 'blue-n1': b1 as string } },
      red: { domains: [r1 as string, r2 as string], nodes: { 'red-n1': r1 as string } },
    },
  });
  try {
    const blue = params(host, 'blue-n1');
    const red = params(host, 'red-n1');
    // Own domains: fence_broker (Pacemaker's way) for blue, stonith (Heartbeat's way) for red.
    const fb = await fenceAgent(blue, { action: 'off', port: b2 as string, nodename: 'x' });
    t.is(fb.exitCode, 0, fb.stderr);
    t.is(await domstate(b2 as string), 'shut off');
    const st = await stonith(red, ['-T', 'off', r2 as string]);
    t.is(st.exitCode, 0, st.stderr);
    t.is(await domstate(r2 as string), 'shut off');

    // Blue against red's running domain, every way in.
    const before = host.audit().length;
    t.is((await fenceAgent(blue, { action: 'off', port: r1 as string })).exitCode, 1);
    t.is((await fenceAgent(blue, { action: 'reboot', port: r1 as string })).exitCode, 1);
    t.not((await stonith(blue, ['-T', 'off', r1 as string])).exitCode, 0);
    t.not((await stonith(blue, ['-T', 'reset', r1 as string])).exitCode, 0);
    const raw = [`off ${r1}`, `reset ${r1}`, `status ${r1}`, `off ${r1};id`, `off ${r1} ${b1}`, `on ${r2}`];
    for (const c of raw) {
      const r = await host.ssh('blue-n1', c);
      t.true(r.exitCode === 1 || r.exitCode === 2, c);
      t.false((JSON.parse(r.stdout) as { ok: boolean }).ok, c);
    }
    t.is(await domstate(r1 as string), 'running');
    t.is(await domstate(r2 as string), 'shut off', 'and on was refused too');
    const lines = host.audit().slice(before);
    const attempts = lines.filter((l) => l.cluster === 'blue' && l.decision !== 'allow');
    t.true(attempts.length >= raw.length + 4, `every attempt audited (${attempts.length})`);
    t.false(lines.some((l) => l.cluster === 'blue' && l.decision === 'allow' && l.action !== 'gethosts' && l.action !== 'list'));
  } finally {
    await host.stop();
    await Promise.all(names.map(removeDomain));
  }
});
