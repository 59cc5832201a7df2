// The serial channel transport (serial.ts) against UNIX-socket servers that
// are a TEST DOUBLE of QEMU's chardev (test/chardev-double.ts): the test
// writes the guest's bytes. The door is a stand-in here that records what it
// is asked and answers when told, so the bounds can be shown: noise then a
// request, a request cut off, a flood on one channel while another guest is
// served on time, reconnection after the socket closes, and a socket outside
// the dir or behind a symlink never connected to.
import test from 'ava';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import type { RefusalRecord } from '../../../../broker/audit.js';
import type { ChannelRequest } from '../../../../broker/doors/fence-virt/door.js';
import { SerialChannels } from '../../../../broker/doors/fence-virt/serial.js';
import { encodeSerialRequest, encodeSerialResponse } from '../../../../broker/doors/fence-virt/serial-wire.js';
import { OP, RESP } from '../../../../broker/doors/fence-virt/wire.js';
import { ChardevDouble } from '../../../chardev-double.js';
import { tempDir, until } from '../../../helpers.js';

const req = (domain: string, seqno: number, op: number = OP.status) => encodeSerialRequest({ request: op, flags: 0, domain, seqno });

/** A log that keeps its lines, to wait for what the transport says. */
function memoryLog() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

interface Asked {
  c: ChannelRequest;
  at: number;
  gone: AbortSignal;
  answer: (b: Buffer | undefined) => void;
}

/** Channels whose door is a stand-in: each request waits in `asked` until answered (or answers at once with `auto`). */
function setup(o: { auto?: Record<string, boolean>; rps?: number; burst?: number; readTimeoutMs?: number; windowMs?: number } = {}) {
  const dir = join(tempDir('fb-serial-'), 'channels');
  mkdirSync(dir, { mode: 0o700 });
  const asked: Asked[] = [];
  const audit: RefusalRecord[] = [];
  const { log, lines } = memoryLog();
  const channels = new SerialChannels({
    serve: (c, gone) =>
      new Promise<Buffer | undefined>((answer) => {
        const a = { c, at: performance.now(), gone, answer };
        asked.push(a);
        if (o.auto?.[c.domain] ?? true) answer(encodeSerialResponse(RESP.success));
      }),
    dir,
    readTimeoutMs: o.readTimeoutMs ?? 5_000,
    requestsPerSecond: o.rps ?? 2,
    burst: o.burst ?? 5,
    audit: (r) => void audit.push(r),
    log,
    backoff: { minMs: 50, maxMs: 400 },
    ...(o.windowMs ? { windowMs: o.windowMs } : {}),
  });
  const doubles: ChardevDouble[] = [];
  const guest = async (domain: string, at = join(dir, `${domain}.sock`)) => {
    const g = await ChardevDouble.listen(at);
    doubles.push(g);
    return g;
  };
  return {
    dir, asked, audit, lines, channels, guest,
    close: async () => {
      channels.close();
      for (const g of doubles) await g.close();
    },
  };
}

test('noise, then a valid request: the request is served; the noise is counted in one summary line', async (t) => {
  const s = setup({ windowMs: 300 });
  t.teardown(s.close);
  const g = await s.guest('blue-1');
  s.channels.add('blue-1', g.path);
  await g.connected();
  const noise = Buffer.from('\r\nDebian GNU/Linux 13 blue-1 ttyS1\r\nblue-1 login: \x1b[0m\x00\xffabb', 'latin1');
  g.write(Buffer.concat([noise, req('blue-2', 1)]));
  t.deepEqual(await g.reply(), { code: RESP.success, bytes: 5 });
  t.is(s.asked.length, 1);
  t.like(s.asked[0]?.c, { channel: g.path, domain: 'blue-1', request: { request: OP.status, flags: 0, domain: 'blue-2', seqno: 1 } });
  await until('the summary line', () => s.audit.some((r) => r.kind === 'fence_virt_channel_dropped'));
  t.like(s.audit.find((r) => r.kind === 'fence_virt_channel_dropped'), { door: 'fence_virt/serial', peer: 'channel:blue-1', channel: g.path, channel_domain: 'blue-1', garbage_bytes: noise.length, over_rate: 0, queue_full: 0 });
});

test('a request cut off halfway: nothing is done, one audit line after read_timeout; the next request is served', async (t) => {
  const s = setup({ readTimeoutMs: 300 });
  t.teardown(s.close);
  const g = await s.guest('blue-1');
  s.channels.add('blue-1', g.path);
  await g.connected();
  g.write(req('blue-2', 1, OP.off).subarray(0, 37));
  await until('the read timeout line', () => s.audit.some((r) => r.kind === 'fence_virt_read_timeout'));
  t.like(s.audit[0], { kind: 'fence_virt_read_timeout', door: 'fence_virt/serial', peer: 'channel:blue-1', channel: g.path, channel_domain: 'blue-1', bytes: 37 });
  t.is(s.asked.length, 0, 'the door was never asked');
  g.write(req('blue-2', 2, OP.off));
  t.deepEqual(await g.reply(), { code: RESP.success, bytes: 5 });
  t.is(s.asked.length, 1);
  t.is(s.asked[0]?.c.request.seqno, 2);
});

test('a flood on one channel: one served, one waiting, the rest dropped and counted; another guest is served at once', async (t) => {
  // blue-1's requests hang in the door until the test answers them; red-1's are answered at once.
  // No refill during the test (0.01/s): each channel has its burst of 5, exactly.
  const s = setup({ auto: { 'blue-1': false }, windowMs: 60_000, rps: 0.01 });
  t.teardown(s.close);
  const flood = await s.guest('blue-1');
  const other = await s.guest('red-1');
  s.channels.add('blue-1', flood.path);
  s.channels.add('red-1', other.path);
  await flood.connected();
  await other.connected();
  const burst = Buffer.concat(Array.from({ length: 2000 }, (_, i) => req('blue-2', i, OP.off)));
  flood.write(burst);
  await until('the flood read', () => s.channels.list().find((c) => c.domain === 'blue-1')?.overRate === 1995);
  // Only the first request reached the door; one waits; three more fit the burst but not the queue.
  t.is(s.asked.length, 1);
  t.like(s.channels.list().find((c) => c.domain === 'blue-1'), { overRate: 1995, queueFull: 3, served: 0 });
  const t0 = performance.now();
  other.write(req('red-1', 1));
  t.deepEqual(await other.reply(), { code: RESP.success, bytes: 5 });
  const took = performance.now() - t0;
  t.true(took < 2_000, `red-1 answered in ${Math.round(took)} ms while blue-1's channel is flooded and its request hangs`);
  // blue-1's first request is answered, then the waiting one is served; nothing else of the flood.
  s.asked[0]?.answer(encodeSerialResponse(RESP.success));
  t.deepEqual(await flood.reply(), { code: RESP.success, bytes: 5 });
  await until('the waiting request', () => s.asked.length === 3);
  t.deepEqual(s.asked.map((a) => `${a.c.domain}:${a.c.request.seqno}`), ['blue-1:0', 'red-1:1', 'blue-1:1']);
  s.asked[2]?.answer(encodeSerialResponse(RESP.off));
  t.deepEqual(await flood.reply(), { code: RESP.off, bytes: 5 });
  // The summary goes out when the channel goes.
  s.channels.remove('blue-1');
  t.like(s.audit.find((r) => r.kind === 'fence_virt_channel_dropped'), { channel_domain: 'blue-1', over_rate: 1995, queue_full: 3, garbage_bytes: 0 });
  t.is(s.audit.filter((r) => r.kind === 'fence_virt_channel_dropped').length, 1, 'one line, not one per request');
});

test('the rate limit: a burst of 5, then dropped until the bucket refills', async (t) => {
  // 0.01 per second: nothing refills during the test, so the bound is exact.
  const s = setup({ rps: 0.01, burst: 5 });
  t.teardown(s.close);
  const g = await s.guest('blue-1');
  s.channels.add('blue-1', g.path);
  await g.connected();
  // One at a time, each after the last one's answer: no queueing involved.
  for (let i = 0; i < 5; i++) {
    g.write(req('blue-2', i));
    t.deepEqual(await g.reply(), { code: RESP.success, bytes: 5 });
  }
  g.write(req('blue-2', 5));
  await until('the sixth dropped', () => s.channels.list()[0]?.overRate === 1);
  t.is(s.asked.length, 5);
  t.is(g.received.length, 0, 'no answer to a dropped request');
});

test('the socket closes (QEMU gone): the request in progress loses its client; the channel reconnects and is served again', async (t) => {
  const s = setup({ auto: { 'blue-1': false } });
  t.teardown(s.close);
  const g = await s.guest('blue-1');
  s.channels.add('blue-1', g.path);
  await g.connected(1);
  g.write(req('blue-2', 1, OP.off));
  await until('the request at the door', () => s.asked.length === 1);
  g.drop();
  await until('the gone signal', () => s.asked[0]?.gone.aborted === true);
  await g.connected(2);
  await until('the broker side connected', () => s.channels.counts().connected === 1);
  t.deepEqual(s.channels.counts(), { connected: 1, known: 1 });
  s.asked[0]?.answer(encodeSerialResponse(RESP.success));
  g.write(req('blue-2', 2));
  await until('the second request', () => s.asked.length === 2);
  s.asked[1]?.answer(encodeSerialResponse(RESP.success));
  // Only the answer to the request made on this connection arrives on it.
  t.deepEqual(await g.reply(), { code: RESP.success, bytes: 5 });
  t.is(g.received.length, 0);
  // Removed (the domain stopped): closed, and not reconnected.
  s.channels.remove('blue-1');
  await g.until('the broker closing', () => g.current?.destroyed === true || g.current?.readableEnded === true);
  t.deepEqual(s.channels.counts(), { connected: 0, known: 0 });
  t.is(g.connections.length, 2);
});

test('a socket the broker is told of before it exists is connected once it appears (backoff, not a failure)', async (t) => {
  const s = setup();
  t.teardown(s.close);
  const path = join(s.dir, 'late-1.sock');
  s.channels.add('late-1', path);
  await until('a failed attempt', () => s.lines.some((l) => String(l.msg).includes('not there')));
  const g = await s.guest('late-1', path);
  await g.connected();
  g.write(req('late-2', 1));
  t.deepEqual(await g.reply(), { code: RESP.success, bytes: 5 });
});

test('never connected: a path outside the dir, in a subfolder, or a symlink in the dir', async (t) => {
  const s = setup();
  t.teardown(s.close);
  const outside = await s.guest('out-1', join(tempDir('fb-serial-out-'), 'out-1.sock'));
  mkdirSync(join(s.dir, 'sub'));
  const sub = await s.guest('sub-1', join(s.dir, 'sub', 'sub-1.sock'));
  t.false(s.channels.add('out-1', outside.path));
  t.false(s.channels.add('sub-1', sub.path));
  t.false(s.channels.add('dots-1', `${s.dir}/sub/../x.sock`));
  // A symlink inside the dir to the socket outside: the name is right, the thing is not a socket.
  symlinkSync(outside.path, join(s.dir, 'link-1.sock'));
  t.true(s.channels.add('link-1', join(s.dir, 'link-1.sock')));
  await until('the refusal', () => s.lines.some((l) => String(l.msg).includes('is not a socket')));
  t.deepEqual(s.channels.counts(), { connected: 0, known: 1 });
  t.is(outside.connections.length, 0);
  t.is(sub.connections.length, 0);
});
