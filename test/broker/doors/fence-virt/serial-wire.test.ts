// fence_virt's serial wire (serial_req_t, serial_resp_t, the hostlist reply)
// byte by byte, and the framer that turns a channel's byte stream into whole
// requests: split anywhere, noise before and between, false magics, a flood
// held in a bounded buffer, a request cut off and dropped after read_timeout.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import {
  SERIAL_MAGIC, SERIAL_REQUEST_SIZE, SerialFramer, decodeSerialReply, decodeSerialRequest, encodeSerialHostlist, encodeSerialRequest, encodeSerialResponse,
} from '../../../../broker/doors/fence-virt/serial-wire.js';
import { HOST_STATE, HOST_STATE_SIZE, OP, RESP, RF_UUID, WireError } from '../../../../broker/doors/fence-virt/wire.js';

const req = (domain = 'blue-2', seqno = 123_456, request: number = OP.off, flags = 0) => encodeSerialRequest({ request, flags, domain, seqno });

test('serial_req_t: 74 bytes, "abba" first, fields at their offsets, little-endian', (t) => {
  const b = encodeSerialRequest({ request: OP.status, flags: RF_UUID, domain: 'web-1', seqno: 0x01020304 });
  t.is(b.length, SERIAL_REQUEST_SIZE);
  t.is(SERIAL_REQUEST_SIZE, 74);
  t.deepEqual([...b.subarray(0, 4)], [0x61, 0x62, 0x62, 0x61]);
  t.is(b.readUInt32LE(0), SERIAL_MAGIC);
  t.is(b[4], OP.status);
  t.is(b[5], RF_UUID);
  t.is(b.subarray(6, 11).toString('latin1'), 'web-1');
  t.is(b[11], 0, 'the domain is NUL-terminated');
  t.deepEqual([...b.subarray(70, 74)], [0x04, 0x03, 0x02, 0x01]);
  t.deepEqual(decodeSerialRequest(b), { request: OP.status, flags: RF_UUID, domain: 'web-1', seqno: 0x01020304 });
});

test('serial_req_t: what does not decode says what and where', (t) => {
  t.throws(() => decodeSerialRequest(Buffer.alloc(73)), { instanceOf: WireError, message: 'request of 73 bytes; a serial request is exactly 74' });
  const bad = req();
  bad[0] = 0x62;
  t.throws(() => decodeSerialRequest(bad), { instanceOf: WireError, message: /magic 0x61626262 at byte 0/ });
  const full = req();
  full.fill(0x41, 6, 70);
  t.throws(() => decodeSerialRequest(full), { instanceOf: WireError, message: 'domain field (bytes 6-69) is not NUL-terminated' });
  t.throws(() => encodeSerialRequest({ request: OP.off, flags: 0, domain: 'x'.repeat(64), seqno: 1 }), { instanceOf: WireError, message: /domain of 64 bytes; at most 63/ });
});

test('serial_resp_t and the hostlist reply as fence_virtd writes them', (t) => {
  t.deepEqual([...encodeSerialResponse(RESP.off)], [0x61, 0x62, 0x62, 0x61, 2]);
  const h = encodeSerialHostlist(['blue-1', 'blue-2', 'blue-3'], { 'blue-1': 'on', 'blue-2': 'off', 'blue-3': 'paused' }, RESP.success);
  // magic+253, three records, the zero record, magic+code.
  t.is(h.length, 5 + 4 * HOST_STATE_SIZE + 5);
  t.deepEqual([...h.subarray(0, 5)], [0x61, 0x62, 0x62, 0x61, RESP.hostlist]);
  t.true(h.subarray(5 + 3 * HOST_STATE_SIZE, 5 + 4 * HOST_STATE_SIZE).every((x) => x === 0));
  t.deepEqual([...h.subarray(h.length - 5)], [0x61, 0x62, 0x62, 0x61, RESP.success]);
  t.deepEqual(decodeSerialReply(h), {
    code: RESP.hostlist,
    hosts: [{ domain: 'blue-1', state: HOST_STATE.on }, { domain: 'blue-2', state: HOST_STATE.off }, { domain: 'blue-3', state: HOST_STATE.none }],
    final: RESP.success,
    bytes: h.length,
  });
  t.is(decodeSerialReply(h.subarray(0, h.length - 1)), undefined, 'not whole yet');
  // The client scans for the magic: noise before it is skipped.
  t.deepEqual(decodeSerialReply(Buffer.concat([Buffer.from('noise\n'), encodeSerialResponse(RESP.perm)])), { code: RESP.perm, bytes: 11 });
});

/** A framer that records what it hands on. */
function framer(readTimeoutMs = 60_000) {
  const frames: Buffer[] = [];
  const timeouts: number[] = [];
  const f = new SerialFramer({ readTimeoutMs, frame: (b) => frames.push(b), timeout: (n) => timeouts.push(n) });
  return { f, frames, timeouts };
}

test('framer: a request split at every possible point comes out whole, once', (t) => {
  const r = req('web-2', 42);
  for (let cut = 1; cut < r.length; cut++) {
    const { f, frames } = framer();
    f.push(r.subarray(0, cut));
    t.is(frames.length, 0);
    f.push(r.subarray(cut));
    t.is(frames.length, 1, `cut at ${cut}`);
    t.deepEqual(frames[0], r);
    t.is(f.garbage, 0);
    f.reset();
  }
  // Byte by byte, two requests back to back.
  const { f, frames } = framer();
  for (const byte of Buffer.concat([r, req('web-3', 43)])) f.push(Buffer.from([byte]));
  t.deepEqual(frames.map((b) => decodeSerialRequest(b).domain), ['web-2', 'web-3']);
  f.reset();
});

test('framer: noise before and between requests is discarded and counted, a magic split across reads is kept', (t) => {
  const { f, frames } = framer();
  const noise = Buffer.from('login: \r\n\x00\xff garbage ab');
  f.push(Buffer.concat([noise, req('a', 1).subarray(0, 2)]));
  t.is(f.garbage, noise.length, 'the "ab" before the split magic is noise too');
  f.push(Buffer.concat([req('a', 1).subarray(2), Buffer.from('xyz'), req('b', 2)]));
  t.deepEqual(frames.map((b) => decodeSerialRequest(b)), [
    { request: OP.off, flags: 0, domain: 'a', seqno: 1 },
    { request: OP.off, flags: 0, domain: 'b', seqno: 2 },
  ]);
  t.is(f.garbage, noise.length + 3);
  f.reset();
});

test('framer: a false magic (no NUL in its domain field) is skipped and the real request after it found', (t) => {
  const { f, frames } = framer();
  // "abba" followed by 70 bytes of 'A': its would-be domain has no NUL.
  const fake = Buffer.concat([Buffer.from('abba'), Buffer.alloc(30, 0x41)]);
  const real = req('red-1', 7);
  f.push(fake);
  t.is(frames.length, 0);
  f.push(real);
  t.is(frames.length, 1);
  t.deepEqual(decodeSerialRequest(frames[0] as Buffer), { request: OP.off, flags: 0, domain: 'red-1', seqno: 7 });
  t.is(f.garbage, fake.length);
  f.reset();
});

test('framer: a magic straddling noise and a real request, or a request with foreign bytes in its padding or flags, is not taken for one', (t) => {
  const { f, frames } = framer();
  // Noise ending in "abb", then a request: "abb"+"a" is a magic 3 bytes before the real one.
  const noise = Buffer.from('login: abb', 'latin1');
  f.push(Buffer.concat([noise, req('blue-2', 1)]));
  t.is(frames.length, 1);
  t.deepEqual(decodeSerialRequest(frames[0] as Buffer), { request: OP.off, flags: 0, domain: 'blue-2', seqno: 1 });
  t.is(f.garbage, noise.length);
  // Not what fence_virt writes (it zeroes the request first): a byte after the domain's NUL, an unknown flag bit.
  const padded = req('blue-2', 2);
  padded[6 + 40] = 0x41;
  const flagged = req('blue-2', 3);
  flagged[5] = 0x80;
  f.push(Buffer.concat([padded, flagged, req('blue-2', 4, OP.off, RF_UUID)]));
  t.deepEqual(frames.slice(1).map((b) => decodeSerialRequest(b)), [{ request: OP.off, flags: RF_UUID, domain: 'blue-2', seqno: 4 }], 'the UUID flag is a request (the door refuses it)');
  t.is(f.garbage, noise.length + 2 * SERIAL_REQUEST_SIZE);
  f.reset();
});

test('framer: a flood of noise and of magics is held in a bounded buffer', (t) => {
  const { f, frames } = framer();
  let max = 0;
  let pushed = 0;
  for (let i = 0; i < 256; i++) {
    const chunk = Buffer.concat([randomBytes(4096), Buffer.from('abbaabbaabba')]);
    f.push(chunk);
    pushed += chunk.length;
    max = Math.max(max, f.holding);
  }
  t.true(max < SERIAL_REQUEST_SIZE, `never more than one request's worth held (max ${max})`);
  // Every byte is accounted for: handed on in a frame, held, or discarded and counted.
  t.is(f.garbage + frames.length * SERIAL_REQUEST_SIZE + f.holding, pushed);
  t.true(f.garbage > pushed / 2, `the noise is counted (${f.garbage} of ${pushed})`);
  // Whatever random frames came out are whole 74-byte candidates; a real request after the flood still gets through.
  f.reset();
  const before = frames.length;
  f.push(req('web-1', 9));
  t.is(frames.length, before + 1);
  t.is(decodeSerialRequest(frames.at(-1) as Buffer).domain, 'web-1');
  f.reset();
});

test('framer: a request cut off is dropped after read_timeout from its first byte, and nothing of it comes out', async (t) => {
  const { f, frames, timeouts } = framer(200);
  const r = req('blue-2', 5);
  const t0 = performance.now();
  f.push(r.subarray(0, 30));
  const fired = new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (timeouts.length) {
        clearInterval(poll);
        resolve();
      }
    }, 10);
  });
  // Bytes trickling in do not extend the bound.
  await new Promise((r2) => setTimeout(r2, 100));
  f.push(r.subarray(30, 40));
  await fired;
  t.true(performance.now() - t0 >= 195, 'not before read_timeout');
  t.deepEqual(timeouts, [40]);
  t.is(f.timedOut, 1);
  t.is(f.holding, 0);
  // The rest of that request arriving later is noise, and the next whole request is served.
  f.push(r.subarray(40));
  f.push(req('blue-2', 6));
  t.is(frames.length, 1);
  t.is(decodeSerialRequest(frames[0] as Buffer).seqno, 6);
  f.reset();
});

test('framer: a request finished in time arms no timeout; noise alone arms none', async (t) => {
  const { f, frames, timeouts } = framer(50);
  const r = req();
  f.push(r.subarray(0, 10));
  f.push(r.subarray(10));
  f.push(Buffer.from('just noise, no magic'));
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.is(frames.length, 1);
  t.deepEqual(timeouts, []);
  f.reset();
});
