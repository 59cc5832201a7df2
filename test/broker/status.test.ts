// fencectl status against the real daemon (test/broker-daemon.ts) and the
// real OpenSSH client: a fence held in flight (the virsh TEST DOUBLE holds its
// destroy; a real libvirt destroy cannot be held) shows in the answer with its
// race mark and storm count; the socket is root's alone (mode, owner, folder,
// a non-root client refused by the kernel); oversized, unknown, idle and
// surplus clients are bounded; a stopped daemon gets an error naming the
// socket. Then the foreground log: text and JSON, ISO times, one line per request.
import test from 'ava';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectPath } from '../../common/paths.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { makeDouble, type Double } from '../doubles.js';
import { fencectl, tempDir, until, within } from '../helpers.js';
import type { StatusReport } from '../../broker/status.js';

async function setup(opts: { extraBroker?: string[]; args?: string[] } = {}): Promise<{ d: Daemon; fake: Double }> {
  const fake = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2']) fake.setDomain(dom, 'running (booted)');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' }, extra: ['limits: { fences_per_window: 2, window: 600 }'] } },
    admins: ['ops'],
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
    ...(opts.extraBroker ? { extraBroker: opts.extraBroker } : {}),
    ...(opts.args ? { args: opts.args } : {}),
  });
  return { d, fake };
}

const calls = (fake: Double) => fake.readFile('calls').trim().split('\n').filter(Boolean);

async function statusJson(d: Daemon): Promise<StatusReport> {
  const r = await fencectl(['status', '--config', d.config, '--json']);
  if (r.exitCode !== 0) throw new Error(`fencectl status exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(String(r.stdout)) as StatusReport;
}

/** A raw client of the socket: what it got, and whether the daemon closed it. */
function rawClient(path: string): { socket: Socket; got: () => string; closed: Promise<number> } {
  const t0 = performance.now();
  const socket = connect(path);
  let got = '';
  socket.on('data', (b: Buffer) => (got += b.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - t0)));
  return { socket, got: () => got, closed };
}

test('status while a fence is in flight shows it, its race mark and storm count; then the mark and count stay', async (t) => {
  // Long bounds: the destroy is held (and must not be killed as a stuck command) while fencectl runs several times on a busy machine.
  const { d, fake } = await setup({ extraBroker: ['  timeouts: { request: 300, command: 280, verify: 120 }'] });
  try {
    const start = d.auditAll().find((l) => l.event === 'start') as { policy: string; config_sha256: string };
    writeFileSync(join(fake.dir, 'hold-destroy'), '');
    const fence = d.ssh('blue-1', 'off blue-2');
    await until('the destroy reached the toolstack', () => calls(fake).includes('destroy blue-2'));

    // Both forms at once: the held fence (and its client's 60 s bound) waits on them.
    const [s, text] = await Promise.all([statusJson(d), fencectl(['status', '--config', d.config])]);
    t.is(s.pid, d.pid);
    t.true(s.uptime_s >= 0);
    t.is(s.config.file, d.config);
    t.is(s.config.sha256, createHash('sha256').update(readFileSync(d.config)).digest('hex'));
    t.is(s.config.sha256, start.config_sha256);
    t.is(s.policy.revision, start.policy);
    t.is(s.host_key, d.fingerprint);
    t.regex(s.toolstack, /^virsh/);
    t.is(s.requests_in_progress, 1);
    t.is(s.fences_in_flight.length, 1);
    t.like(s.fences_in_flight[0], { action: 'off', target: 'blue-2', cluster: 'blue', node: 'blue-1', admin: null, door: 'ssh' });
    const id = s.fences_in_flight[0]?.request_id;
    t.regex(String(id), /^[0-9a-f-]{36}$/);
    t.deepEqual(s.doors.map((x) => x.door), ['ssh']);
    t.is(s.doors[0]?.listen, `127.0.0.1:${d.port}`);
    t.like(s.doors[0]?.connections, { authenticated: 1, with_request_running: 1 });
    t.false('error' in s.coordination);
    if ('marks' in s.coordination) {
      t.deepEqual(s.coordination.marks, [{ target: 'blue-2', holder: 'blue/blue-1', inflight: 1 }]);
      t.deepEqual(s.coordination.storms, [{ cluster: 'blue', domains: ['blue-2'] }]);
    } else t.fail(`no marks in the coordination part: ${JSON.stringify(s.coordination)}`);

    // The same, as a person reads it.
    t.is(text.exitCode, 0, String(text.stderr));
    t.log(String(text.stdout));
    t.regex(String(text.stdout), new RegExp(`^fence-broker pid ${d.pid}, up `));
    t.true(String(text.stdout).includes(`off blue-2 by blue/blue-1 via ssh, `), String(text.stdout));
    t.true(String(text.stdout).includes(`(request ${String(id)})`));
    t.true(String(text.stdout).includes('blue-2 marked by blue/blue-1, fence in flight'));
    t.true(String(text.stdout).includes('storm counts: blue 1'));
    t.regex(String(text.stdout), /ssh +127\.0\.0\.1:\d+ +unauthenticated 0, authenticated 1, with request running 1/);

    // Released: the fence ends, its audit line has the id status showed; the mark now lapses, the count stays.
    rmSync(join(fake.dir, 'hold-destroy'));
    const done = await fence;
    t.is(done.exitCode, 0, `${done.stdout}${done.stderr}`);
    t.like(d.audit().at(-1), { request_id: id, action: 'off', target: 'blue-2', code: 'ok' });
    const after = await statusJson(d);
    t.deepEqual(after.fences_in_flight, []);
    t.is(after.requests_in_progress, 0);
    if ('marks' in after.coordination) {
      t.is(after.coordination.marks.length, 1);
      t.like(after.coordination.marks[0], { target: 'blue-2', holder: 'blue/blue-1', inflight: 0 });
      t.true((after.coordination.marks[0]?.expiresInMs ?? 0) > 0);
      t.deepEqual(after.coordination.storms, [{ cluster: 'blue', domains: ['blue-2'] }]);
    } else t.fail(JSON.stringify(after.coordination));
    // Asking changed nothing: no audit line, no toolstack call.
    t.is(d.auditAll().filter((l) => l.event === 'request').length, 1);

    // A reload shows: the new config's sha256 and load time.
    await d.reload((y) => y.replace('fences_per_window: 2', 'fences_per_window: 3'));
    const reloaded = await statusJson(d);
    t.is(reloaded.config.sha256, createHash('sha256').update(readFileSync(d.config)).digest('hex'));
    t.not(reloaded.config.sha256, s.config.sha256);
    t.true(Date.parse(reloaded.config.loaded_at) > Date.parse(s.config.loaded_at));
  } finally {
    rmSync(join(fake.dir, 'hold-destroy'), { force: true });
    await d.stop();
  }
});

test('the socket is root\'s alone: 0600, owned by the daemon\'s user, in a 0700 folder; a non-root client is refused', async (t) => {
  const { d } = await setup();
  try {
    const path = join(d.dir, 'status.sock');
    const st = lstatSync(path);
    t.true(st.isSocket());
    t.is(st.mode & 0o777, 0o600);
    t.is(st.uid, process.getuid?.() ?? -1);
    t.is(lstatSync(d.dir).mode & 0o777, 0o700);
    if (process.getuid?.() !== 0) {
      if (process.env.CI === 'true') t.fail('CI runs as root: the non-root client must be tried');
      else t.log('not root: the non-root client is not tried here');
      return;
    }
    // nobody, through the folder and the socket itself: even a 0755 folder would not let it connect.
    chmodSync(d.dir, 0o755);
    try {
      const r = await execa(process.execPath, [projectPath('dist', 'broker', 'fencectl.js'), 'status', '--socket', path], { reject: false, uid: 65534, gid: 65534 });
      t.is(r.exitCode, 1, String(r.stdout));
      t.true(String(r.stderr).includes(`no answer from fence-broker on ${path}: permission denied`), String(r.stderr));
    } finally {
      chmodSync(d.dir, 0o700);
    }
  } finally {
    await d.stop();
  }
});

test('clients are bounded: oversized and unknown requests are answered with an error, idle ones are cut at the deadline, a fifth beyond the bound is turned away', async (t) => {
  const { d } = await setup();
  try {
    const path = join(d.dir, 'status.sock');
    const big = rawClient(path);
    big.socket.write('s'.repeat(100));
    await within('the oversized client closed', big.closed, 30_000);
    t.regex(big.got(), /"ok":false,"error":"request longer than 64 bytes"/);

    const other = rawClient(path);
    other.socket.write('reload\n');
    await within('the unknown request closed', other.closed, 30_000);
    t.regex(other.got(), /unknown request \\"reload\\": the only one is \\"status\\"/);

    // Four idle clients hold every slot; each is cut at the deadline (5 s), the bound this test is about.
    const idle = [0, 1, 2, 3].map(() => rawClient(path));
    await Promise.all(idle.map((c) => new Promise((r) => c.socket.once('connect', r))));
    const fifth = rawClient(path);
    fifth.socket.write('status\n');
    const fifthClosed = await within('the fifth client closed', fifth.closed, 30_000);
    t.is(fifth.got(), '', 'no answer beyond max connections');
    const cut = await within('the idle clients cut', Promise.all(idle.map((c) => c.closed)), 60_000);
    for (const ms of cut) t.true(ms >= 4_500, `cut after ${Math.round(ms)} ms, before the 5 s deadline`);
    t.true(fifthClosed < Math.min(...cut), 'the fifth was turned away at once, not held');
    for (const c of idle) t.is(c.got(), '');
    // The slots are free again, and nothing of this reached the audit log.
    t.is((await statusJson(d)).pid, d.pid);
    t.is(d.audit().length, 0);
  } finally {
    await d.stop();
  }
});

test('a stopped daemon: fencectl status names the socket and why, exit 1; a folder others can enter is refused, the daemon serves on', async (t) => {
  const { d } = await setup();
  const path = join(d.dir, 'status.sock');
  await d.stop();
  const r = await fencectl(['status', '--config', d.config]);
  t.is(r.exitCode, 1);
  t.is(String(r.stderr).trim(), `fencectl status: no answer from fence-broker on ${path}: no such socket: is fence-broker running with this config? (broker.status_socket, default status.sock beside the host key)`);

  const open = join(tempDir('fb-status-'), 'open');
  mkdirSync(open, { mode: 0o755 });
  chmodSync(open, 0o755);
  const { d: d2 } = await setup({ extraBroker: [`  status_socket: ${join(open, 'status.sock')}`] });
  try {
    t.regex(d2.logTail(), /fencectl status will not answer: status socket \S+status\.sock: folder \S+open is mode 755: group and others must have no access/);
    const r2 = await fencectl(['status', '--config', d2.config]);
    t.is(r2.exitCode, 1);
    t.regex(String(r2.stderr), /no such socket/);
    t.is((await d2.ssh('blue-1', 'status blue-2')).exitCode, 0, 'fencing goes on');
  } finally {
    await d2.stop();
  }
});

test('a socket left by a daemon killed with -9 is replaced at the restart; status answers from the new daemon', async (t) => {
  const { d } = await setup();
  await d.kill9();
  t.true(lstatSync(join(d.dir, 'status.sock')).isSocket(), 'the dead daemon left its socket');
  const gone = await fencectl(['status', '--config', d.config]);
  t.is(gone.exitCode, 1);
  t.regex(String(gone.stderr), /nothing listens on it: fence-broker is not running/);
  const again = await d.restart();
  try {
    const s = await statusJson(again);
    t.is(s.pid, again.pid);
    t.not(s.pid, d.pid);
  } finally {
    await again.stop();
  }
});

test('the foreground log: --log-format text has ISO times and one line per request naming it; json has ISO times; a bad format is refused', async (t) => {
  const { d } = await setup({ args: ['--log-format', 'text'] });
  try {
    t.regex(d.logTail(), /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO: fence-broker ready \{"listen":"127\.0\.0\.1:\d+","status_socket":"[^"]+status\.sock"/m);
    const line = d.waitLog(/request blue\/blue-1 off blue-2/);
    t.is((await d.ssh('blue-1', 'off blue-2')).exitCode, 0);
    const id = String(d.audit().at(-1)?.request_id);
    t.regex(await line, new RegExp(`^\\[[0-9T:.-]+Z\\] INFO: request blue/blue-1 off blue-2 via ssh: allow, ok \\(\\d+ ms, request ${id}\\) \\{"request_id":"${id}","door":"ssh","requester":"blue/blue-1","action":"off","target":"blue-2","decision":"allow","outcome":"ok"`));
    const refused = d.waitLog(/request blue\/blue-2 off blue-2/);
    t.is((await d.ssh('blue-2', 'off blue-2')).exitCode, 1);
    t.regex(await refused, /INFO: request blue\/blue-2 off blue-2 via ssh: deny, refused/);
    const admin = d.waitLog(/request admin ops list/);
    t.is((await d.ssh('ops', 'list')).exitCode, 0);
    t.regex(await admin, /request admin ops list via ssh: allow, ok/);
    // The audit log is unchanged by the log: one outcome line per request, as before.
    t.is(d.audit().length, 3);
  } finally {
    await d.stop();
  }

  const { d: j } = await setup();
  try {
    const line = j.waitLog(/"msg":"request blue\/blue-1 status blue-1/);
    t.is((await j.ssh('blue-1', 'status blue-1')).exitCode, 0);
    const rec = JSON.parse(await line) as Record<string, unknown>;
    t.regex(String(rec.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    t.like(rec, { level: 30, door: 'ssh', requester: 'blue/blue-1', action: 'status', target: 'blue-1', decision: 'allow', outcome: 'ok' });
  } finally {
    await j.stop();
  }

  const bad = await execa(process.execPath, [projectPath('dist', 'broker', 'main.js'), '--config', '/nonexistent.yaml', '--log-format', 'pretty'], { reject: false });
  t.is(bad.exitCode, 2);
  // Worded by the option table once fencectl's tables (issue 22) are merged: "is not one of text, json".
  t.regex(String(bad.stderr), /^fence-broker: --log-format: "pretty" is not (text or json|one of text, json)$/m);
});
