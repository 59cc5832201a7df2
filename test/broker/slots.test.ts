// Connection slots cannot be hoarded (docs/design.md §3.8), through the real
// daemon: an absolute handshake deadline, unauthenticated sockets bounded per
// source and overall, authenticated ones per identity and per cluster, a
// total, capped authentication attempts, idle connections destroyed. Other
// loopback addresses (127.0.0.2, ...) stand for other hosts.
import test from 'ava';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { startDaemon } from '../broker-daemon.js';
import { until } from '../helpers.js';
import { closed, connectAs, request } from '../ssh-client.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';

const TENANTS = {
  blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } },
  red: { domains: ['red-1'], nodes: { 'red-a': 'red-1' } },
};

/** When each socket closed (performance.now()), for deadlines timed from its connect. */
const closedAt = new WeakMap<Socket, number>();

/** A raw TCP socket from `from`; resolves once connected. */
const tcp = (port: number, from = '127.0.0.1'): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    s.once('close', () => closedAt.set(s, performance.now()));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });

/** Resolves with the ms from now until the socket closes (a paused socket never sees its end, so it is resumed). */
const closeOf = (s: Socket): Promise<number> => {
  const t0 = performance.now();
  s.on('error', () => undefined);
  s.resume();
  return new Promise((resolve) => {
    if (s.closed) resolve(0);
    else s.once('close', () => resolve(performance.now() - t0));
  });
};

/** Whether the socket closes within `ms` (a generous bound: what it proves is set by a longer handshake_timeout). */
const closesWithin = (s: Socket, ms: number): Promise<boolean> =>
  Promise.race([closeOf(s).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);

test('the handshake deadline is absolute: a client trickling bytes is destroyed on time, and so is a silent one', async (t) => {
  // The bound firing is the point: 2 s.
  const d = await startDaemon({ clusters: TENANTS, extraBroker: ['  limits: { handshake_timeout: 2 }'] });
  try {
    // Timed from before each connect: the daemon's deadline starts at its accept, which cannot be earlier,
    // however late a busy machine delivers the client's own connect event.
    const trickleStart = performance.now();
    const trickler = await tcp(d.port);
    const silentStart = performance.now();
    const silent = await tcp(d.port);
    const ident = 'SSH-2.0-very-slow-client-that-never-finishes-its-identification-line';
    let sent = 0;
    const drip = setInterval(() => {
      if (!trickler.destroyed) trickler.write(ident[sent++ % ident.length] ?? 'x');
    }, 100);
    await Promise.all([closeOf(trickler), closeOf(silent)]);
    const [trickleMs, silentMs] = [closedAt.get(trickler)! - trickleStart, closedAt.get(silent)! - silentStart];
    clearInterval(drip);
    t.log(`trickler (a byte every 100 ms, ${sent} sent) destroyed after ${Math.round(trickleMs)} ms; silent after ${Math.round(silentMs)} ms`);
    t.true(trickleMs >= 1_900, 'not before the deadline');
    t.true(sent >= 5, 'bytes kept arriving and did not extend the deadline');
    // The slots are free again.
    t.like((await request(d, 'red-a', 'status red-1')).reply, { ok: true });
  } finally {
    await d.stop();
  }
});

test('unauthenticated sockets are capped per source address: a tenant on another address still gets in', async (t) => {
  const d = await startDaemon({
    clusters: TENANTS,
    extraBroker: ['  limits: { max_unauthenticated: 8, max_unauthenticated_per_source: 4, handshake_timeout: 120 }'],
  });
  const attacker: Socket[] = [];
  try {
    for (let i = 0; i < 10; i++) attacker.push(await tcp(d.port, '127.0.0.2'));
    const fates = attacker.map((s) => ({ s, closed: false }));
    for (const f of fates) void closeOf(f.s).then(() => (f.closed = true));
    // Six of the ten are refused at once (handshake_timeout is 120 s, so a close now is a refusal).
    t.deepEqual(await Promise.all(attacker.slice(4).map((s) => closesWithin(s, 30_000))), [true, true, true, true, true, true]);
    const r = await request(d, 'red-a', 'status red-1');
    t.like(r.reply, { ok: true, code: 'ok' });
    t.deepEqual(
      fates.map((f) => f.closed),
      [false, false, false, false, true, true, true, true, true, true],
      'the first four held their slots (until the handshake deadline), the rest were closed at once',
    );

    // Many sources together reach max_unauthenticated (8): beyond it new sockets are closed at once, and
    // handshake_timeout is what frees the slots; closing the attackers frees them now.
    const others: Socket[] = [];
    for (let i = 0; i < 4; i++) others.push(await tcp(d.port, '127.0.0.3'));
    const refused = await tcp(d.port, '127.0.0.1');
    t.true(await closesWithin(refused, 30_000), 'beyond max_unauthenticated a socket is closed at once');
    for (const s of [...attacker, ...others]) s.destroy();
    await Promise.all([...attacker, ...others].map(closeOf));
    // The broker frees the slots when it sees the closes, a moment after the client does: try until then.
    let answer: Awaited<ReturnType<typeof request>> | undefined;
    await until('the tenant gets in once the attackers are gone', () => answer !== undefined, 60_000, async () => {
      answer = await request(d, 'red-a', 'status red-1').catch(() => undefined);
    });
    t.like(answer?.reply, { ok: true });
  } finally {
    for (const s of attacker) s.destroy();
    await d.stop();
  }
});

test('one tenant cannot hoard authenticated slots: per identity and per cluster caps; another tenant still gets in', async (t) => {
  const d = await startDaemon({
    clusters: TENANTS,
    extraBroker: ['  limits: { max_per_identity: 2, max_per_cluster: 3, max_connections: 20 }'],
  });
  try {
    const b1 = [await connectAs(d, 'blue-1'), await connectAs(d, 'blue-1')];
    await t.throwsAsync(connectAs(d, 'blue-1'), undefined, 'a third connection of blue-1 is refused (max_per_identity 2)');
    const b2 = await connectAs(d, 'blue-2');
    await t.throwsAsync(connectAs(d, 'blue-2'), undefined, 'cluster blue is full (max_per_cluster 3)');
    const r = await request(d, 'red-a', 'status red-1');
    t.like(r.reply, { ok: true }, 'red is not locked out by blue');
    // Slots come back when connections close (once the broker sees the close, a moment after the client).
    b1[0]?.end();
    let again: ssh2.Client | undefined;
    await until('blue-2 gets the freed slot', () => again !== undefined, 60_000, async () => {
      again = await connectAs(d, 'blue-2').catch(() => undefined);
    });
    t.truthy(again);
    for (const c of [...b1, b2, again]) c?.end();
  } finally {
    await d.stop();
  }
});

test('beyond max_connections a socket is closed at once; authentication attempts are capped', async (t) => {
  const d = await startDaemon({
    clusters: TENANTS,
    extraBroker: ['  limits: { max_connections: 3, max_unauthenticated: 1, max_auth_attempts: 3, handshake_timeout: 120 }'],
  });
  try {
    // Three authenticated connections take every slot.
    const held = [await connectAs(d, 'blue-1'), await connectAs(d, 'blue-2'), await connectAs(d, 'red-a')];
    t.true(await closesWithin(await tcp(d.port), 30_000), 'a fourth connection is closed at once');
    for (const c of held) c.end();
    // The slots are free once the broker has seen the closes: a request gets through.
    let free = false;
    await until('the slots are free again', () => free, 60_000, async () => {
      free = await request(d, 'blue-1', 'list').then(
        () => true,
        () => false,
      );
    });

    // Five unknown keys offered in one connection: the broker stops listening after three.
    const keys = Array.from({ length: 5 }, (_, i) => {
      const f = join(d.dir, `stranger-${i}`);
      writeFileSync(f, generateEd25519().private, { mode: 0o600 });
      return f;
    });
    const r = await execa(
      'ssh',
      ['-v', '-p', String(d.port), ...keys.flatMap((k) => ['-i', k]), '-o', `UserKnownHostsFile=${d.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', 'x@127.0.0.1', 'list'],
      { reject: false, timeout: 60_000 },
    );
    t.is(r.exitCode, 255);
    const offered = (String(r.stderr).match(/Offering public key/g) ?? []).length;
    t.true(offered <= 4, `the client got to offer ${offered} keys`);
    // And a real client works once slots are free.
    const ok = await d.ssh('blue-1', 'list');
    t.is(ok.exitCode, 0, ok.stderr);
  } finally {
    await d.stop();
  }
});

test('an authenticated connection with nothing running is destroyed after idle_timeout', async (t) => {
  // The bound firing is the point: 1 s.
  const d = await startDaemon({ clusters: TENANTS, extraBroker: ['  limits: { idle_timeout: 1 }'] });
  try {
    const c = await connectAs(d, 'blue-1');
    const t0 = performance.now();
    await closed(c);
    t.log(`closed after ${Math.round(performance.now() - t0)} ms idle`);
    t.pass('closed by the broker: nothing else would close it');
  } finally {
    await d.stop();
  }
});
