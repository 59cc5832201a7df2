// The door's accounting without a broker: accept(), and serve()'s challenges
// over loopback where a source must prove a key (the broker is a stand-in).
// Allowances per source and in total, the total sparing sources that proved
// a key, the replay history and release(), the summary lines.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import type { RefusalRecord } from '../../../../broker/audit.js';
import { connect, createServer, type Socket } from 'node:net';
import { challengeResponse, newChallenge, prepareKey, responseMatches } from '../../../../broker/doors/fence-virt/auth.js';
import { FenceVirtDoor, readExactly, type Source } from '../../../../broker/doors/fence-virt/door.js';
import type { KeyEntry } from '../../../../broker/doors/fence-virt/keys.js';
import { FAMILY, HASH, OP, encodeRequest } from '../../../../broker/doors/fence-virt/wire.js';

const keyOf = (node: string): { key: Buffer; entry: KeyEntry } => {
  const key = randomBytes(512);
  return { key, entry: { identity: { kind: 'node', cluster: 'blue', node, domain: node, fingerprint: `fp-${node}` }, prepared: prepareKey(key), file: `/k/${node}.key` } };
};

function door(over: { perSource?: number; total?: number; windowMs?: number } = {}) {
  const lines: RefusalRecord[] = [];
  const a = keyOf('blue-1');
  const d = new FenceVirtDoor({
    keys: () => [a.entry],
    handle: () => Promise.reject(new Error('accept() never calls the broker')),
    hostHas: () => Promise.resolve(true),
    audit: (r) => lines.push(r),
    minHash: 'sha256',
    challengeHash: 'sha256',
    exchangeTimeoutMs: 1000,
    unverifiedPerSource: over.perSource ?? 100,
    unverifiedTotal: over.total ?? 1000,
    windowMs: over.windowMs ?? 10_000,
    log: pino({ level: 'silent' }),
  });
  return { d, lines, key: a.key };
}

const packet = (key: Buffer, seqno = randomBytes(4).readUInt32LE(), domain = 'blue-2') =>
  encodeRequest({ op: OP.off, hashtype: HASH.sha256, flags: 0, domain, address: Buffer.alloc(0), port: 0, family: FAMILY.ipv4, seqno, random: randomBytes(6) }, key);
const src = (address: string): Source => ({ address, port: 40000, family: 'IPv4' });

/**
 * A node proves its key as the client does: a request from `address`, then both challenges over a loopback
 * connection (the source is the packet's, as the door is told). The door's broker stand-in then refuses.
 */
async function prove(d: FenceVirtDoor, key: Buffer, address: string): Promise<boolean> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const incoming = new Promise<Socket>((r) => server.once('connection', r));
  const c = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
  c.on('error', () => undefined);
  const conn = await incoming;
  conn.on('error', () => undefined);
  try {
    const accepted = d.accept(packet(key), src(address), 'tcp');
    if (!accepted) return false;
    const serving = d.serve(accepted, conn);
    const signal = AbortSignal.timeout(30_000);
    const ours = newChallenge();
    c.write(ours);
    const proof = await readExactly(c, 64, signal);
    c.write(challengeResponse(key, 'sha256', await readExactly(c, 64, signal)));
    await serving;
    return responseMatches(key, 'sha256', ours, proof);
  } finally {
    c.destroy();
    server.close();
  }
}

test('the total allowance bounds hashing across sources, and spares a source that proved a key', async (t) => {
  const { d, lines, key } = door({ total: 5 });
  const stranger = randomBytes(512);
  t.true(await prove(d, key, '10.0.0.1'), 'a node proves its key (both challenges)');
  for (let i = 0; i < 20; i++) t.is(d.accept(packet(stranger), src(`10.1.0.${i}`), 'tcp'), undefined);
  t.is(lines.filter((l) => l.kind === 'fence_virt_unverified').length, 5, 'five hashed, fifteen dropped unread');
  t.truthy(d.accept(packet(key), src('10.0.0.1'), 'tcp'), 'the proven source still gets through');
  t.is(d.accept(packet(key), src('10.0.0.2'), 'tcp'), undefined, 'an unproven one does not while the total is spent');
  d.close();
  const summary = lines.filter((l) => l.kind === 'fence_virt_over_allowance');
  t.is(summary.reduce((n, l) => n + Number(l.dropped), 0), 16);
});

test('per source: a flood spends only its own allowance', (t) => {
  const { d, lines, key } = door({ perSource: 3 });
  for (let i = 0; i < 50; i++) d.accept(Buffer.alloc(10), src('10.9.9.9'), 'multicast');
  t.truthy(d.accept(packet(key), src('10.0.0.1'), 'multicast'));
  d.close();
  t.deepEqual(lines.map((l) => [l.kind, l.door, l.dropped]), [
    ['fence_virt_malformed', 'fence_virt/multicast', undefined],
    ['fence_virt_malformed', 'fence_virt/multicast', undefined],
    ['fence_virt_malformed', 'fence_virt/multicast', undefined],
    ['fence_virt_over_allowance', 'fence_virt/multicast', 47],
  ]);
});

test('replays: the same node, op, seqno and domain within the window is dropped; release() lets a retransmit through', (t) => {
  const { d, lines, key } = door();
  const p1 = packet(key, 42);
  const a = d.accept(p1, src('10.0.0.1'), 'multicast');
  t.truthy(a);
  // A retransmit: same seqno, new random field and hash.
  t.is(d.accept(packet(key, 42), src('10.0.0.1'), 'multicast'), undefined);
  t.like(lines.at(-1), { kind: 'fence_virt_replay', node: 'blue-1', seqno: 42 });
  d.release(a as NonNullable<typeof a>);
  t.truthy(d.accept(packet(key, 42), src('10.0.0.1'), 'multicast'));
  t.truthy(d.accept(packet(key, 42, 'blue-3'), src('10.0.0.1'), 'multicast'), 'another domain is another request');
  d.close();
});

test('hasDomain: requests without a domain are every broker\'s; a name off the pattern is nobody\'s', async (t) => {
  const { d, key } = door();
  const list = d.accept(encodeRequest({ op: OP.hostlist, hashtype: HASH.sha256, flags: 0, domain: '', address: Buffer.alloc(0), port: 0, family: FAMILY.ipv4, seqno: 1, random: randomBytes(6) }, key), src('10.0.0.1'), 'multicast');
  t.true(await d.hasDomain(list as NonNullable<typeof list>));
  const bad = d.accept(packet(key, 7, '-rf'), src('10.0.0.1'), 'multicast');
  t.false(await d.hasDomain(bad as NonNullable<typeof bad>));
  d.close();
});

test('a reload that takes a key away aborts its request in progress and closes the connection (serve over a real socket)', async (t) => {
  const a = keyOf('blue-1');
  let keys: KeyEntry[] = [a.entry];
  let entered!: () => void;
  const inHandle = new Promise<void>((r) => (entered = r));
  const aborted: string[] = [];
  const lines: RefusalRecord[] = [];
  const d = new FenceVirtDoor({
    keys: () => keys,
    // Stands in for Broker.handle: holds the request until the client is gone, as a slow fence would.
    handle: (_who, _peer, _command, ctx) =>
      new Promise((_resolve, reject) => {
        entered();
        ctx.gone?.addEventListener('abort', () => {
          aborted.push(String((ctx.gone?.reason as Error).message));
          reject(ctx.gone?.reason);
        });
      }),
    hostHas: () => Promise.resolve(true),
    audit: (r) => lines.push(r),
    minHash: 'sha256',
    challengeHash: 'sha256',
    exchangeTimeoutMs: 10_000,
    unverifiedPerSource: 10,
    unverifiedTotal: 100,
    windowMs: 10_000,
    log: pino({ level: 'silent' }),
  });
  const served = new Promise<void>((resolve) => {
    const server = createServer((conn) => {
      conn.on('error', () => undefined);
      void (async () => {
        const p = await readExactly(conn, 176, AbortSignal.timeout(10_000));
        const accepted = d.accept(p, src('127.0.0.1'), 'tcp');
        if (accepted) await d.serve(accepted, conn);
        server.close();
        resolve();
      })();
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      const c = connect({ host: '127.0.0.1', port });
      c.on('error', () => undefined);
      c.on('connect', () => {
        void (async () => {
          const ours = newChallenge();
          c.write(packet(a.key));
          c.write(ours);
          const signal = AbortSignal.timeout(10_000);
          t.true(responseMatches(a.key, 'sha256', ours, await readExactly(c, 64, signal)), 'the door proved the key');
          c.write(challengeResponse(a.key, 'sha256', await readExactly(c, 64, signal)));
          const closed = new Promise((r) => c.once('close', r));
          await inHandle;
          keys = [];
          t.is(d.revoke(), 1);
          await closed;
        })();
      });
    });
  });
  await served;
  t.deepEqual(aborted, ['key revoked by a reload']);
  t.is(d.revoke(), 0, 'nothing left to revoke');
  d.close();
});
