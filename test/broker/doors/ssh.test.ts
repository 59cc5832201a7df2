// The SSH front door, through the real daemon and the real OpenSSH client:
// identity from the key only, tenants confined to their own domains, strict
// grammar with nothing reaching a shell, one audit line per request.
import test from 'ava';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../../broker-daemon.js';

let d: Daemon;
test.before(async () => {
  d = await startDaemon({
    clusters: {
      blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } },
      red: { domains: ['red-1', 'red-2'], nodes: { 'red-a': 'red-1' }, extra: ['actions: [status, off]'] },
    },
    admins: ['ops'],
  });
});
test.after.always(async () => d?.stop());

const json = (s: string) => JSON.parse(s.trim()) as Record<string, unknown>;

test.serial('a node fences a domain of its own cluster; the sim shows it off; one audit line says so', async (t) => {
  const before = d.audit().length;
  const r = await d.ssh('blue-1', 'off blue-3');
  t.is(r.exitCode, 0, r.stderr);
  t.like(json(r.stdout), { ok: true, action: 'off', target: 'blue-3', state: 'off', code: 'ok' });
  t.is(d.sim()['blue-3'], 'shut off');
  const lines = d.audit().slice(before);
  t.is(lines.length, 1);
  t.like(lines[0], { cluster: 'blue', node: 'blue-1', action: 'off', target: 'blue-3', decision: 'allow', exit_code: 0, result: { ok: true, state: 'off' } });
  t.regex(String(lines[0]?.fingerprint), /^SHA256:/);
  t.regex(String(lines[0]?.peer), /^127\.0\.0\.1:\d+$/);
  t.regex(String((lines[0]?.policy as { revision: string }).revision), /^rego-/);
  t.is(typeof lines[0]?.duration_ms, 'number');
  t.truthy(lines[0]?.time);
});

test.serial("another tenant's domain is refused exactly like a domain that does not exist, and is left untouched", async (t) => {
  const foreign = await d.ssh('red-a', 'off blue-1');
  const absent = await d.ssh('red-a', 'off no-such-vm');
  t.is(foreign.exitCode, 1);
  t.is(absent.exitCode, 1);
  const f = json(foreign.stdout);
  const a = json(absent.stdout);
  t.is(f.code, 'refused');
  t.is(String(f.message).replace('blue-1', 'X'), String(a.message).replace('no-such-vm', 'X'));
  t.is(d.sim()['blue-1'], 'running');
  const status = await d.ssh('red-a', 'status blue-2');
  t.is(status.exitCode, 1);
  t.is(d.sim()['blue-2'], 'running');
});

test.serial('list and gethosts show only the caller\'s own domains; an admin sees all and may not power', async (t) => {
  t.deepEqual(json((await d.ssh('red-a', 'list')).stdout).domains, ['red-1', 'red-2']);
  t.deepEqual(json((await d.ssh('blue-2', 'gethosts')).stdout).domains, ['blue-1', 'blue-2', 'blue-3']);
  t.deepEqual(json((await d.ssh('ops', 'list')).stdout).domains, ['blue-1', 'blue-2', 'blue-3', 'red-1', 'red-2']);
  const off = await d.ssh('ops', 'off red-2');
  t.is(off.exitCode, 1);
  t.regex(String(json(off.stdout).message), /admin_read_only/);
  t.is(d.sim()['red-2'], 'running');
});

test.serial('crafted commands are malformed (exit 2), change nothing, reach no shell, and are each audited', async (t) => {
  const marker = join(d.dir, 'pwned');
  const crafted = [
    `off red-2;touch ${marker}`,
    `off $(touch ${marker})`,
    `off red-2 && touch ${marker}`,
    'off red-2\ttouch',
    'off -red-2',
    'off ../../etc/passwd',
    'destroy red-2',
    'off',
    'list red-2',
    `status ${'a'.repeat(300)}`,
  ];
  const before = d.audit().length;
  for (const c of crafted) {
    const r = await d.ssh('red-a', c);
    t.is(r.exitCode, 2, c);
    t.like(json(r.stdout), { ok: false, code: 'malformed' }, c);
  }
  // No command at all (ssh asks for a shell): malformed, not a shell.
  const shell = await d.ssh('red-a', undefined, ['-T']);
  t.is(shell.exitCode, 2);
  t.like(json(shell.stdout), { code: 'malformed' });
  t.false(existsSync(marker));
  t.is(d.sim()['red-2'], 'running');
  const lines = d.audit().slice(before);
  t.is(lines.length, crafted.length + 1, 'exactly one audit line per request');
  t.true(lines.every((l) => l.decision === 'malformed' && l.exit_code === 2));
});

test.serial('passwords and keyboard-interactive are refused; the host key was created 0600', async (t) => {
  const noKey = await d.ssh('blue-1', 'list', ['-o', 'PreferredAuthentications=password,keyboard-interactive']);
  t.is(noKey.exitCode, 255);
  t.regex(noKey.stderr, /Permission denied \(publickey\)/);
  t.is(statSync(join(d.dir, 'host_ed25519')).mode & 0o777, 0o600);
});

test.serial('a key that is not in clusters.yaml is refused', async (t) => {
  const { execa } = await import('execa');
  const { writeFileSync } = await import('node:fs');
  const { generateEd25519 } = await import('../../../broker/identity/keygen.js');
  const file = join(d.dir, 'stranger');
  writeFileSync(file, generateEd25519().private, { mode: 0o600 });
  const r = await execa('ssh', ['-p', String(d.port), '-i', file, '-o', `UserKnownHostsFile=${d.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', 'blue-1@127.0.0.1', 'off blue-2'], { reject: false });
  t.is(r.exitCode, 255);
  t.regex(r.stderr, /Permission denied \(publickey\)/);
  t.is(d.sim()['blue-2'], 'running');
});

test.serial('fence race: two nodes fencing each other at once, exactly one wins; the loser may read, never power', async (t) => {
  const race = await startDaemon({ clusters: { duo: { domains: ['duo-1', 'duo-2'], nodes: { 'duo-1': 'duo-1', 'duo-2': 'duo-2' }, extra: [] } } });
  try {
    const [a, b] = await Promise.all([race.ssh('duo-1', 'off duo-2'), race.ssh('duo-2', 'off duo-1')]);
    const wins = [a, b].filter((r) => r.exitCode === 0);
    t.is(wins.length, 1, `${a.stdout} ${b.stdout}`);
    const loser = a.exitCode === 0 ? b : a;
    t.regex(String(json(loser.stdout).message), /fence_race_lost/);
    const sim = race.sim();
    t.deepEqual(Object.values(sim).sort(), ['running', 'shut off']);

    // The loser may still read (Pacemaker monitors its device from the rebooted node), never power.
    const loserNode = a.exitCode === 0 ? 'duo-2' : 'duo-1';
    const winnerDomain = a.exitCode === 0 ? 'duo-1' : 'duo-2';
    const status = await race.ssh(loserNode, `status ${loserNode}`);
    t.is(status.exitCode, 0, status.stdout);
    t.like(json(status.stdout), { ok: true, state: 'off' });
    t.is((await race.ssh(loserNode, 'list')).exitCode, 0);
    t.is((await race.ssh(loserNode, 'gethosts')).exitCode, 0);
    for (const power of [`on ${winnerDomain}`, `off ${winnerDomain}`, `reset ${winnerDomain}`]) {
      const r = await race.ssh(loserNode, power);
      t.is(r.exitCode, 1, power);
      t.regex(String(json(r.stdout).message), /fence_race_lost/, power);
    }
    t.deepEqual(Object.values(race.sim()).sort(), ['running', 'shut off'], 'the loser changed nothing');
  } finally {
    await race.stop();
  }
});

test.serial('the host key survives a restart (same fingerprint)', async (t) => {
  const first = await startDaemon({ clusters: { g: { domains: ['g-1'], nodes: { 'g-1': 'g-1' } } } });
  await first.stop();
  t.is(statSync(join(first.dir, 'host_ed25519')).mode & 0o777, 0o600);
  const { loadOrCreateHostKey } = await import('../../../broker/doors/ssh.js');
  const a = loadOrCreateHostKey(join(first.dir, 'host_ed25519'));
  t.false(a.created);
  const b = loadOrCreateHostKey(join(first.dir, 'host_ed25519'));
  t.is(a.fingerprint, b.fingerprint);
});
