// The fence_virt door over TCP, end to end: Debian's real fence_virt client
// (-T 127.0.0.1 and ::1) fences real QEMU domains through the real broker
// daemon, each node with its own key, every result checked by the test's own
// `virsh domstate`. Then one test per hostile case, each request leaving one
// audit line that names its door. Hand-made packets (raw sockets, encodeRequest)
// only where the real client cannot send the case: a replay, the UUID flag,
// malformed bytes, a slow-loris, a flood from one source.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { keyPath, writeNodeKey } from '../../../../broker/doors/fence-virt/keys.js';
import { FAMILY, HASH, OP, RF_UUID, encodeRequest } from '../../../../broker/doors/fence-virt/wire.js';
import { startDaemon, type Daemon } from '../../../broker-daemon.js';
import { fencectl, tempDir, until, within } from '../../../helpers.js';
import { createDomain, domstate, libvirtMissing, removeDomain, sweepStale, URI, virsh } from '../../../libvirt-host.js';

const fenceVirtMissing = (await execa('fence_virt', ['-V'], { reject: false })).failed ? 'Debian fence-virt (fence_virt) is not installed' : undefined;
const missing = (await libvirtMissing()) ?? fenceVirtMissing;
if (missing && process.env.CI === 'true') throw new Error(`CI needs real libvirt/QEMU and fence_virt: ${missing}`);
if (missing) console.error(`fence_virt door tests skipped here: ${missing}; run scripts/system-setup.sh as root`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

const created: string[] = [];
const domain = (tag: string, start = true) => createDomain(tag, start, (name) => created.push(name));

interface Ctx {
  d: Daemon;
  port4: number;
  port6: number;
  keyDir: string;
  doms: Record<'keep' | 'off4' | 'off6' | 'flood' | 'red', string>;
}
let ctx: Ctx;

anyTest.before(async () => {
  if (missing) return;
  await sweepStale();
  const [keep, off4, off6, flood, red] = await Promise.all([domain('fvkeep'), domain('fvoff4'), domain('fvoff6'), domain('fvflood'), domain('fvred')]);
  const doms = { keep, off4, off6, flood, red } as Ctx['doms'];
  const keyDir = join(tempDir('fb-fvkeys-'), 'fence-virt');
  const clusters = {
    // blue-2's own domain is fenced last (the flood test): until then it may fence (the fence race refuses a fenced node).
    blue: { domains: [keep, off4, off6, flood], nodes: { 'blue-1': keep, 'blue-2': flood } },
    red: { domains: [red], nodes: { 'red-1': red } },
  };
  for (const [c, spec] of Object.entries(clusters)) for (const n of Object.keys(spec.nodes)) writeNodeKey(keyDir, c, n, false);
  const d = await startDaemon({
    clusters,
    toolstack: `{ type: virsh, uri: "${URI}" }`,
    extraBroker: ['  fence_virt:', '    listen: ["127.0.0.1:0", "[::1]:0"]', `    key_dir: ${keyDir}`, '    read_timeout: 2', '    unverified_per_source: 20'],
  });
  const m = /"fence_virt":\{"tcp":\["127\.0\.0\.1:(\d+)","\[::1\]:(\d+)"\]/.exec(d.logTail(1_000_000));
  if (!m) throw new Error(`no fence_virt listeners in the ready line: ${d.logTail()}`);
  ctx = { d, port4: Number(m[1]), port6: Number(m[2]), keyDir, doms };
});

anyTest.after.always(async () => {
  await ctx?.d.stop();
  await Promise.all(created.map(removeDomain));
});

const key = (cluster: string, node: string): string => keyPath(ctx.keyDir, cluster, node);

/** Debian's fence_virt against the broker; `args` after the connection options. */
async function fenceVirt(keyFile: string, args: string[], host = '127.0.0.1') {
  const port = host === '::1' ? ctx.port6 : ctx.port4;
  const t0 = performance.now();
  const r = await execa('fence_virt', ['-T', host, '-p', String(port), '-k', keyFile, '-t', '60', ...args], { reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), ms: Math.round(performance.now() - t0) };
}

/** Audit lines of the door (request outcomes and the door's own refusals; not the write-ahead intents) added since `from`. */
const doorLines = (from: number) => ctx.d.auditAll().slice(from).filter((l) => l.event !== 'intent' && typeof l.door === 'string' && String(l.door).startsWith('fence_virt/'));

/** A raw client from `local` (a loopback address of its own: its own allowance): writes `bytes`, collects what comes back until the broker closes. */
function raw(bytes: Buffer[], local = '127.0.0.3', gapMs = 0): Promise<{ reply: Buffer; closedMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ host: '127.0.0.1', port: ctx.port4, localAddress: local });
    const got: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    s.on('data', (b) => got.push(b));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(timer);
      resolve({ reply: Buffer.concat(got), closedMs: Math.round(performance.now() - t0) });
    });
    s.on('connect', () => {
      if (gapMs === 0) {
        // Then half-closed, as a client that has nothing more to say: a short packet ends here.
        for (const b of bytes) s.write(b);
        s.end();
        return;
      }
      let i = 0;
      timer = setInterval(() => {
        const b = bytes[i++];
        if (b === undefined || s.destroyed) clearInterval(timer);
        else s.write(b);
      }, gapMs);
    });
    setTimeout(() => reject(new Error('raw client: the broker never closed the connection')), 120_000).unref();
  });
}

/** A raw client driven by what the broker sends: read(n) resolves with the next n bytes (or fewer, when it closes). */
function session(local: string) {
  const s = connect({ host: '127.0.0.1', port: ctx.port4, localAddress: local });
  s.on('error', () => undefined);
  let buf = Buffer.alloc(0);
  let ended = false;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  s.on('data', (b: Buffer) => {
    buf = Buffer.concat([buf, b]);
    wake();
  });
  s.on('close', () => {
    ended = true;
    wake();
  });
  const connected = new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return {
    write: async (b: Buffer) => {
      await connected;
      s.write(b);
    },
    read: async (n: number): Promise<Buffer> => {
      while (buf.length < n && !ended) await new Promise<void>((r) => waiters.push(r));
      const out = buf.subarray(0, n);
      buf = buf.subarray(out.length);
      return out;
    },
    closed: () => new Promise<void>((r) => (ended ? r() : s.once('close', () => r()))),
    destroy: () => s.destroy(),
  };
}

const signed = (keyFile: string, over: Partial<Parameters<typeof encodeRequest>[0]> = {}): Buffer =>
  encodeRequest({ op: OP.status, hashtype: HASH.sha256, flags: 0, domain: ctx.doms.keep, address: Buffer.alloc(0), port: 0, family: FAMILY.ipv4, seqno: randomBytes(4).readUInt32LE(), random: randomBytes(6), ...over }, readFileSync(keyFile));

test('off over IPv4: blue-1 fences a domain of its cluster with its own key; virsh confirms; one audit line naming the door and the node', async (t) => {
  const from = ctx.d.auditAll().length;
  const r = await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.off4, '-o', 'off']);
  t.is(r.exitCode, 0, r.stderr);
  t.is(await domstate(ctx.doms.off4), 'shut off');
  const lines = doorLines(from);
  t.is(lines.length, 1, JSON.stringify(lines));
  t.like(lines[0], { event: 'request', door: 'fence_virt/tcp', cluster: 'blue', node: 'blue-1', action: 'off', target: ctx.doms.off4, decision: 'allow', code: 'ok' });
  t.regex(String(lines[0]?.peer), /^127\.0\.0\.1:\d+$/);
  t.log(`fence_virt -o off through the broker: ${r.ms} ms`);
});

test('off over IPv6 (::1): blue-2, another node with another key, is named as itself', async (t) => {
  const from = ctx.d.auditAll().length;
  const r = await fenceVirt(key('blue', 'blue-2'), ['-H', ctx.doms.off6, '-o', 'off'], '::1');
  t.is(r.exitCode, 0, r.stderr);
  t.is(await domstate(ctx.doms.off6), 'shut off');
  const lines = doorLines(from);
  t.is(lines.length, 1);
  t.like(lines[0], { door: 'fence_virt/tcp', node: 'blue-2', action: 'off', code: 'ok' });
  t.regex(String(lines[0]?.peer), /^\[::1\]:\d+$/);
});

test('status, monitor and list: list shows only the domains of the node\'s cluster, read from the toolstack', async (t) => {
  const from = ctx.d.auditAll().length;
  const on = await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.keep, '-o', 'status']);
  t.is(on.exitCode, 0, on.stderr);
  t.regex(on.stdout, /Status: ON/);
  const off = await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.off4, '-o', 'status']);
  t.is(off.exitCode, 2, 'RESP_OFF');
  const monitor = await fenceVirt(key('blue', 'blue-1'), ['-o', 'monitor']);
  t.is(monitor.exitCode, 0, monitor.stderr);
  const red = await fenceVirt(key('red', 'red-1'), ['-o', 'list']);
  t.is(red.exitCode, 0, red.stderr);
  t.deepEqual(red.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[0]), [ctx.doms.red]);
  const blue = await fenceVirt(key('blue', 'blue-1'), ['-o', 'list']);
  t.deepEqual(blue.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[0]).sort(), [ctx.doms.flood, ctx.doms.keep, ctx.doms.off4, ctx.doms.off6].sort());
  t.regex(blue.stdout, new RegExp(`${ctx.doms.keep}\\s.*on`));
  t.deepEqual(doorLines(from).map((l) => [l.event, l.action, l.door]), [['request', 'status', 'fence_virt/tcp'], ['request', 'status', 'fence_virt/tcp'], ['request', 'gethosts', 'fence_virt/tcp'], ['request', 'list', 'fence_virt/tcp'], ['request', 'list', 'fence_virt/tcp']]);
  // For the record (no bound asserted here; benchmarks compare): the client's whole run, start to exit.
  const ms: number[] = [];
  for (let i = 0; i < 9; i++) ms.push((await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.keep, '-o', 'status'])).ms);
  t.log(`fence_virt -o status through the broker, median of 9: ${ms.sort((a, b) => a - b)[4]} ms (${ms.join(', ')})`);
});

test('hostile: a wrong key is refused before anything runs, and audited as unverified', async (t) => {
  const wrong = join(tempDir('fb-fvwrong-'), 'fence_xvm.key');
  writeFileSync(wrong, randomBytes(512), { mode: 0o600 });
  const from = ctx.d.auditAll().length;
  const r = await fenceVirt(wrong, ['-H', ctx.doms.keep, '-o', 'off']);
  t.not(r.exitCode, 0);
  t.is(await domstate(ctx.doms.keep), 'running');
  const lines = doorLines(from);
  t.is(lines.length, 1);
  t.like(lines[0], { event: 'refusal', kind: 'fence_virt_unverified', door: 'fence_virt/tcp', op: 'off', domain: ctx.doms.keep });
});

test('hostile: another tenant\'s domain and a nonexistent one get the same reply', async (t) => {
  const from = ctx.d.auditAll().length;
  const foreign = await fenceVirt(key('red', 'red-1'), ['-H', ctx.doms.keep, '-o', 'off']);
  const none = await fenceVirt(key('red', 'red-1'), ['-H', 'fbt-no-such-domain', '-o', 'off']);
  t.is(foreign.exitCode, 3, 'RESP_PERM');
  t.deepEqual([none.exitCode, none.stdout, none.stderr], [foreign.exitCode, foreign.stdout, foreign.stderr]);
  t.is(await domstate(ctx.doms.keep), 'running');
  const lines = doorLines(from);
  t.deepEqual(lines.map((l) => [l.door, l.node, l.decision, l.code]), [['fence_virt/tcp', 'red-1', 'deny', 'refused'], ['fence_virt/tcp', 'red-1', 'deny', 'refused']]);
});

test('hostile: a captured request replayed within the window is dropped and audited', async (t) => {
  // A recording proxy between the real client and the broker captures the request as a path attacker would.
  let captured: Buffer | undefined;
  const proxy = createServer((c: Socket) => {
    const up = connect({ host: '127.0.0.1', port: ctx.port4 });
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    let first = Buffer.alloc(0);
    c.on('data', (b) => {
      if (!captured) {
        first = Buffer.concat([first, b]);
        if (first.length >= 176) captured = first.subarray(0, 176);
      }
    });
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const port = (proxy.address() as AddressInfo).port;
  const ok = await execa('fence_virt', ['-T', '127.0.0.1', '-p', String(port), '-k', key('blue', 'blue-1'), '-H', ctx.doms.keep, '-o', 'status'], { reject: false, timeout: 60_000 });
  proxy.close();
  t.is(ok.exitCode, 0, String(ok.stderr));
  t.truthy(captured);
  const from = ctx.d.auditAll().length;
  const replay = await raw([captured as Buffer, randomBytes(64)], '127.0.0.5');
  t.is(replay.reply.length, 0, 'no challenge answer, no reply byte');
  const lines = doorLines(from);
  t.is(lines.length, 1);
  t.like(lines[0], { event: 'refusal', kind: 'fence_virt_replay', door: 'fence_virt/tcp', cluster: 'blue', node: 'blue-1', op: 'status' });
  // After the history's window the packet is accepted again, but the replayer cannot answer the broker's
  // challenge without the key: refused before anything runs. (Waiting out the 10 s window is the point here.)
  await new Promise((r) => setTimeout(r, 10_500));
  const later = ctx.d.auditAll().length;
  // As a client paces it: the packet and a challenge, then, once the broker has answered and challenged, a guess.
  const again = session('127.0.0.5');
  await again.write(Buffer.concat([captured as Buffer, randomBytes(64)]));
  t.is((await again.read(128)).length, 128, "the broker's answer to the challenge and its own challenge");
  await again.write(randomBytes(64));
  await again.closed();
  t.is((await again.read(1)).length, 0, 'and nothing more: no reply byte');
  const after = doorLines(later);
  t.is(after.length, 1);
  t.like(after[0], { event: 'refusal', kind: 'fence_virt_challenge_failed', node: 'blue-1', door: 'fence_virt/tcp' });
  t.regex(String(after[0]?.why), /does not match the key/);
});

test("hostile: the broker's challenge reflected back to it on a second connection is refused; nothing runs", async (t) => {
  // Two captured requests of blue-1 (built here with its key, as a recording would hold them).
  const from = ctx.d.auditAll().length;
  const a = session('127.0.0.9');
  await a.write(Buffer.concat([signed(key('blue', 'blue-1'), { op: OP.off }), randomBytes(64)]));
  const challengeOfA = (await a.read(128)).subarray(64);
  t.is(challengeOfA.length, 64);
  // On B, the broker's challenge to A as B's own: its answer would be A's pass.
  const b = session('127.0.0.9');
  await b.write(Buffer.concat([signed(key('blue', 'blue-1'), { op: OP.status }), challengeOfA]));
  await b.closed();
  t.is((await b.read(1)).length, 0, 'B gets no answer at all');
  a.destroy();
  await a.closed();
  t.is(await domstate(ctx.doms.keep), 'running');
  await until('both connections audited', () => doorLines(from).length >= 2, 30_000);
  t.deepEqual(doorLines(from).map((l) => l.kind).sort(), ['fence_virt_challenge_failed', 'fence_virt_challenge_reflected']);
  t.false(doorLines(from).some((l) => l.event === 'request'), 'no request reached the broker');
});

test('hostile: sha1 and no hash are refused and audited', async (t) => {
  // (The no-hash fallback of a client whose key file cannot be read: Debian's fence_virt 1.9.0 refuses a missing
  // -k file itself; a client that falls back sends what -c none sends.)
  const from = ctx.d.auditAll().length;
  const sha1 = await fenceVirt(key('blue', 'blue-1'), ['-c', 'sha1', '-H', ctx.doms.keep, '-o', 'off']);
  const none = await fenceVirt(key('blue', 'blue-1'), ['-c', 'none', '-C', 'none', '-H', ctx.doms.keep, '-o', 'off']);
  t.not(sha1.exitCode, 0);
  t.not(none.exitCode, 0);
  t.is(await domstate(ctx.doms.keep), 'running');
  t.deepEqual(doorLines(from).map((l) => [l.kind, l.hash, l.door]), [['fence_virt_weak_hash', 'sha1', 'fence_virt/tcp'], ['fence_virt_weak_hash', 'none', 'fence_virt/tcp']]);
});

test('hostile: a UUID-flagged request, correctly signed, is refused: names only', async (t) => {
  const uuid = (await virsh('domuuid', ctx.doms.keep)).stdout.trim();
  const from = ctx.d.auditAll().length;
  const r = await raw([signed(key('blue', 'blue-1'), { op: OP.off, flags: RF_UUID, domain: uuid }), randomBytes(64)], '127.0.0.6');
  t.is(r.reply.length, 0);
  t.is(await domstate(ctx.doms.keep), 'running');
  const lines = doorLines(from);
  t.is(lines.length, 1);
  t.like(lines[0], { kind: 'fence_virt_uuid_refused', node: 'blue-1', domain: uuid, door: 'fence_virt/tcp' });
});

test('hostile: short, oversized and garbage packets: closed without a reply, one located audit line each', async (t) => {
  const from = ctx.d.auditAll().length;
  const short = await raw([randomBytes(100)], '127.0.0.7');
  const oversized = await raw([Buffer.concat([signed(key('blue', 'blue-1')), randomBytes(400)])], '127.0.0.7');
  const garbage = Buffer.alloc(176, 0x41);
  const g = await raw([garbage], '127.0.0.7');
  for (const r of [short, oversized, g]) t.is(r.reply.length, 0);
  const lines = doorLines(from);
  t.deepEqual(lines.map((l) => l.kind), ['fence_virt_malformed', 'fence_virt_malformed', 'fence_virt_malformed']);
  t.regex(String(lines[0]?.why), /packet of 100 bytes; a fence_virt request is exactly 176/);
  t.regex(String(lines[1]?.why), /packet of 576 bytes/);
  t.regex(String(lines[2]?.why), /addrlen 65 at byte 2 exceeds the address field \(28\)/);
});

test('hostile: a slow-loris connection is closed at the read deadline although bytes keep coming; a fence meanwhile is not held up', async (t) => {
  const from = ctx.d.auditAll().length;
  // One byte every 100 ms: 17.6 s for a whole request, against a read_timeout of 2 s.
  const loris = raw(Array.from({ length: 176 }, () => Buffer.from([0x41])), '127.0.0.8', 100);
  const status = await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.keep, '-o', 'status']);
  t.is(status.exitCode, 0, status.stderr);
  const r = await loris;
  t.is(r.reply.length, 0);
  t.true(r.closedMs < 17_600, `closed after ${r.closedMs} ms, before the trickle could finish`);
  const lines = doorLines(from);
  t.deepEqual(lines.map((l) => l.kind ?? l.action).sort(), ['fence_virt_read_timeout', 'status'].sort(), JSON.stringify(ctx.d.auditAll().filter((l) => String(l.peer).startsWith('127.0.0.8'))));
  t.regex(String(lines.find((l) => l.kind)?.why), /read_timeout \(2000 ms\)/);
});

test('hostile: 1,000 requests no key verifies, from one source, while a legitimate fence completes; every one accounted for in the audit', async (t) => {
  const wrongKey = join(tempDir('fb-fvflood-'), 'k');
  writeFileSync(wrongKey, randomBytes(512), { mode: 0o600 });
  const from = ctx.d.auditAll().length;
  let sent = 0;
  let floodMs = 0;
  const floodStart = performance.now();
  const flood = (async () => {
    // Eight at a time (the per-source connection bound), each a whole, well-formed, wrongly signed request.
    const worker = async () => {
      while (sent < 1000) {
        sent++;
        await raw([signed(wrongKey, { op: OP.off, domain: ctx.doms.flood })], '127.0.0.2');
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    floodMs = performance.now() - floodStart;
  })();
  const fence = await fenceVirt(key('blue', 'blue-1'), ['-H', ctx.doms.flood, '-o', 'off']);
  t.is(fence.exitCode, 0, fence.stderr);
  t.is(await domstate(ctx.doms.flood), 'shut off');
  await within('the flood', flood);
  t.log(`legitimate off during the flood: ${fence.ms} ms (${sent} unverified requests sent meanwhile or after)`);
  // Those over the allowance are counted in a summary written when the source's window ends.
  const fromFlood = () => doorLines(from).filter((l) => String(l.peer).startsWith('127.0.0.2'));
  const accounted = () => fromFlood().reduce((n, l) => n + (l.kind === 'fence_virt_over_allowance' ? Number(l.dropped) : 1), 0);
  await until('every flood request in the audit', () => accounted() >= 1000, 60_000);
  t.is(accounted(), 1000);
  const hashed = fromFlood().filter((l) => l.kind === 'fence_virt_unverified').length;
  // 20 per source per 10 s window, and a window ends at a sweep (every 2.5 s): as many windows as the flood spanned.
  const windows = Math.ceil(floodMs / 10_000) + 1;
  t.true(hashed <= 20 * windows, `${hashed} requests were hashed (allowance 20 per source per 10 s window, ${windows} windows)`);
  t.log(`${hashed} flood requests hashed, ${1000 - hashed} dropped unread`);
  const legit = doorLines(from).filter((l) => l.event === 'request');
  t.deepEqual(legit.map((l) => [l.node, l.action, l.code]), [['blue-1', 'off', 'ok']]);
});

test('keys: fencectl keygen --fence-virt replaces a node key; the reload revokes the old one at once, removing the file revokes the new', async (t) => {
  const old = join(tempDir('fb-fvold-'), 'old.key');
  writeFileSync(old, readFileSync(key('red', 'red-1')), { mode: 0o600 });
  t.is((await fenceVirt(old, ['-o', 'list'])).exitCode, 0);
  const refused = await fencectl(['keygen', '--fence-virt', '--cluster', 'red', '--node', 'red-1', '--config', ctx.d.config]);
  t.is(refused.exitCode, 2, 'an existing key needs --force');
  t.regex(String(refused.stderr), /exists; pass --force/);
  const kg = await fencectl(['keygen', '--fence-virt', '--cluster', 'red', '--node', 'red-1', '--force', '--config', ctx.d.config]);
  t.is(kg.exitCode, 0, String(kg.stderr));
  t.regex(String(kg.stdout), /replaced .*red-1\.key \(512 random bytes, 0600/);
  t.regex(String(kg.stdout), /\/etc\/cluster\/fence_xvm\.key \(root, 0600\)/);
  t.regex(String(kg.stdout), /fence_virt -T 127\.0\.0\.1 -p 0 -k \/etc\/cluster\/fence_xvm\.key -c sha256 -C sha256 -o list/);
  t.is(readFileSync(key('red', 'red-1')).length, 512);
  // Until the reload the old key works: the broker reads keys with the config.
  const reloaded = await ctx.d.reload((y) => y);
  t.is(reloaded.msg, 'reloaded');
  const from = ctx.d.auditAll().length;
  t.not((await fenceVirt(old, ['-o', 'list'])).exitCode, 0);
  t.is((await fenceVirt(key('red', 'red-1'), ['-o', 'list'])).exitCode, 0);
  // The node keeps its copy; the broker's file goes: revoked by the reload.
  const nodeCopy = join(tempDir('fb-fvnew-'), 'new.key');
  writeFileSync(nodeCopy, readFileSync(key('red', 'red-1')), { mode: 0o600 });
  rmSync(key('red', 'red-1'));
  t.is((await ctx.d.reload((y) => y)).msg, 'reloaded');
  t.not((await fenceVirt(nodeCopy, ['-o', 'list'])).exitCode, 0);
  t.deepEqual(doorLines(from).map((l) => l.kind ?? `${l.action}/${l.node}`), ['fence_virt_unverified', 'list/red-1', 'fence_virt_unverified']);
});

test('config: an unsafe key file refuses the reload, located at key_dir, and the running keys stay', async (t) => {
  const file = key('blue', 'blue-2');
  chmodSync(file, 0o644);
  const r = await ctx.d.reload((y) => y);
  const check = await fencectl(['check', '--config', ctx.d.config]);
  t.is(check.exitCode, 1);
  t.regex(String(check.stderr), /clusters\.yaml:\d+:\d+: broker\.fence_virt\.key_dir: fence_virt key .*blue-2\.key is accessible by group or others/);
  chmodSync(file, 0o600);
  t.regex(String((await fencectl(['check', '--config', ctx.d.config])).stdout), /ok: 2 clusters, .*, 2 fence_virt keys; policy/);
  t.regex(String(r.msg), /reload failed/);
  t.regex(JSON.stringify(r), /clusters\.yaml:\d+:\d+: broker\.fence_virt\.key_dir: fence_virt key .*blue-2\.key is accessible by group or others \(mode 644\); chmod 600 it/);
  t.is((await fenceVirt(file, ['-H', ctx.doms.keep, '-o', 'status'])).exitCode, 0);
  mkdirSync(join(ctx.keyDir, 'nowhere'), { mode: 0o700 }); // a folder of no cluster is ignored
  t.is((await ctx.d.reload((y) => y)).msg, 'reloaded');
});

test('every request and refusal line of the run names its door', (t) => {
  const lines = ctx.d.auditAll().filter((l) => l.event === 'request' || l.event === 'refusal' || l.event === 'intent');
  t.true(lines.length > 0);
  for (const l of lines) t.true(l.door === 'ssh' || String(l.door).startsWith('fence_virt/'), JSON.stringify(l));
});
