// fence_virt's serial protocol (what `fence_virt -D /dev/ttyS1` writes into a
// domain's serial or vmchannel port), written from the facts of fence-agents'
// agents/virt/include/xvm.h: a packed serial_req_t of 74 bytes (magic u32,
// request u8, flags u8, domain[64] NUL-terminated, seqno u32) and a 5-byte
// serial_resp_t (magic u32, response u8), little-endian. There is no hash:
// the channel, which the hypervisor ties to one domain, proves who asks.
//
// A channel is a byte stream that a guest fills at will, so requests are
// framed here: the framer finds the magic, hands on whole requests, discards
// (and counts) the bytes between, and never holds more than one request's
// worth. A request begun and not finished within the read timeout is dropped.
import { HOST_STATE_SIZE, MAX_DOMAIN_LENGTH, RESP, RF_UUID, WireError, hostlistBody } from './wire.js';

/** "abba" on the wire: 61 62 62 61, little-endian 0x61626261. */
export const SERIAL_MAGIC = 0x61626261;
const MAGIC_BYTES = Buffer.from([0x61, 0x62, 0x62, 0x61]);
export const SERIAL_REQUEST_SIZE = 74;
export const SERIAL_RESPONSE_SIZE = 5;

// Offsets inside serial_req_t.
const OFF = { magic: 0, request: 4, flags: 5, domain: 6, seqno: 70 } as const;

export interface SerialRequest {
  /** fence_virt's operation number (wire.ts OP). */
  request: number;
  flags: number;
  /** The domain field up to its first NUL, as latin1; checked against the name pattern later, not here. */
  domain: string;
  seqno: number;
}

/** Decodes one serial_req_t (74 bytes, magic first); throws WireError saying what was wrong and where. */
export function decodeSerialRequest(b: Buffer): SerialRequest {
  if (b.length !== SERIAL_REQUEST_SIZE) throw new WireError(`request of ${b.length} bytes; a serial request is exactly ${SERIAL_REQUEST_SIZE}`);
  const magic = b.readUInt32LE(OFF.magic);
  if (magic !== SERIAL_MAGIC) throw new WireError(`magic 0x${magic.toString(16).padStart(8, '0')} at byte 0; the serial magic is 0x${SERIAL_MAGIC.toString(16)}`);
  const field = b.subarray(OFF.domain, OFF.domain + MAX_DOMAIN_LENGTH);
  const nul = field.indexOf(0);
  if (nul < 0) throw new WireError(`domain field (bytes ${OFF.domain}-${OFF.domain + MAX_DOMAIN_LENGTH - 1}) is not NUL-terminated`);
  return {
    request: b[OFF.request] as number,
    flags: b[OFF.flags] as number,
    domain: field.subarray(0, nul).toString('latin1'),
    seqno: b.readUInt32LE(OFF.seqno),
  };
}

/** Builds a serial_req_t, as the guest's fence_virt does (tests, benchmarks). */
export function encodeSerialRequest(r: SerialRequest): Buffer {
  const domain = Buffer.from(r.domain, 'latin1');
  if (domain.length > MAX_DOMAIN_LENGTH - 1) throw new WireError(`domain of ${domain.length} bytes; at most ${MAX_DOMAIN_LENGTH - 1}`);
  const b = Buffer.alloc(SERIAL_REQUEST_SIZE);
  b.writeUInt32LE(SERIAL_MAGIC, OFF.magic);
  b[OFF.request] = r.request;
  b[OFF.flags] = r.flags;
  domain.copy(b, OFF.domain);
  b.writeUInt32LE(r.seqno >>> 0, OFF.seqno);
  return b;
}

/** serial_resp_t: the magic, then the one response byte. */
export function encodeSerialResponse(code: number): Buffer {
  const b = Buffer.alloc(SERIAL_RESPONSE_SIZE);
  b.writeUInt32LE(SERIAL_MAGIC, 0);
  b[4] = code;
  return b;
}

/**
 * fence_virtd's hostlist reply on a channel: magic + 253, one host_state_t
 * per domain, the all-zero one, then magic + the final code (which the client
 * leaves unread and flushes at its next open).
 */
export function encodeSerialHostlist(domains: readonly string[], states: Record<string, string> | undefined, code: number): Buffer {
  // hostlistBody starts with the 253 byte; the magic goes in front of it.
  return Buffer.concat([MAGIC_BYTES, hostlistBody(domains, states), encodeSerialResponse(code)]);
}

/**
 * The reply as a client reads it (tests): the response byte after the first
 * magic, and for 253 the domain names up to the zero record and the final code.
 * Undefined while `b` holds less than a whole reply.
 */
export function decodeSerialReply(b: Buffer): { code: number; hosts?: { domain: string; state: number }[]; final?: number; bytes: number } | undefined {
  const at = b.indexOf(MAGIC_BYTES);
  if (at < 0 || b.length < at + SERIAL_RESPONSE_SIZE) return undefined;
  const code = b[at + 4] as number;
  if (code !== RESP.hostlist) return { code, bytes: at + SERIAL_RESPONSE_SIZE };
  const hosts: { domain: string; state: number }[] = [];
  for (let off = at + SERIAL_RESPONSE_SIZE; ; off += HOST_STATE_SIZE) {
    if (b.length < off + HOST_STATE_SIZE) return undefined;
    const rec = b.subarray(off, off + HOST_STATE_SIZE);
    if (rec.every((x) => x === 0)) {
      const end = off + HOST_STATE_SIZE;
      const last = b.subarray(end);
      if (last.length < SERIAL_RESPONSE_SIZE || last.readUInt32LE(0) !== SERIAL_MAGIC) return undefined;
      return { code, hosts, final: last[4] as number, bytes: end + SERIAL_RESPONSE_SIZE };
    }
    const name = rec.subarray(0, MAX_DOMAIN_LENGTH);
    const nul = name.indexOf(0);
    hosts.push({ domain: name.subarray(0, nul < 0 ? MAX_DOMAIN_LENGTH : nul).toString('latin1'), state: rec[2 * MAX_DOMAIN_LENGTH] as number });
  }
}

export interface SerialFramerOptions {
  /** A whole request (74 bytes, magic first, shaped like one); decode it with decodeSerialRequest. */
  frame: (bytes: Buffer) => void;
  /** A request begun (its magic seen) and not finished within readTimeoutMs of its first byte: dropped. */
  timeout: (bytesHeld: number) => void;
  readTimeoutMs: number;
}

/**
 * Bytes in, whole requests out. It holds at most one request (74 bytes)
 * between pushes: bytes before a magic are discarded and counted in
 * `garbage`, and so is a magic whose 74 bytes are not shaped like a request
 * (then the search resumes one byte further on, so a real request right after
 * noise is still found).
 */
export class SerialFramer {
  /** Bytes discarded: noise before a magic, and candidates that were no request. */
  garbage = 0;
  /** Requests dropped because they were not finished within the read timeout. */
  timedOut = 0;
  private held: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: SerialFramerOptions) {}

  /** How many bytes the framer holds now (never more than one request). */
  get holding(): number {
    return this.held.length;
  }

  push(chunk: Buffer): void {
    let b = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    for (;;) {
      const at = b.indexOf(MAGIC_BYTES);
      if (at < 0) {
        // Keep a tail that could be the start of a magic split across reads.
        const keep = tailPrefix(b);
        this.garbage += b.length - keep;
        b = b.subarray(b.length - keep);
        break;
      }
      if (at > 0) {
        this.garbage += at;
        b = b.subarray(at);
      }
      if (b.length < SERIAL_REQUEST_SIZE) break;
      const candidate = b.subarray(0, SERIAL_REQUEST_SIZE);
      if (!requestShaped(candidate)) {
        // No client writes this: the magic was noise (or a request's tail), and the search goes on after it.
        this.garbage += 1;
        b = b.subarray(1);
        this.stopTimer();
        continue;
      }
      this.stopTimer();
      b = b.subarray(SERIAL_REQUEST_SIZE);
      this.o.frame(Buffer.from(candidate));
    }
    // Copy: the held bytes must not pin the (possibly large) chunk they came in.
    this.held = Buffer.from(b);
    const begun = this.held.length >= MAGIC_BYTES.length;
    if (begun && this.timer === undefined) {
      this.timer = setTimeout(() => this.expire(), this.o.readTimeoutMs);
      this.timer.unref();
    } else if (!begun) {
      this.stopTimer();
    }
  }

  /** Forgets what is held (the channel closed) and stops the timer. */
  reset(): void {
    this.stopTimer();
    this.held = Buffer.alloc(0);
  }

  private expire(): void {
    this.timer = undefined;
    const n = this.held.length;
    if (n < MAGIC_BYTES.length) return;
    // The cut-off request is dropped whole: nothing of it is acted on.
    this.timedOut++;
    this.held = Buffer.alloc(0);
    this.o.timeout(n);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Whether 74 bytes that start with the magic are shaped like what fence_virt
 * writes: it zeroes the request before filling it, so the domain field is a
 * name, its NUL, and zeros to the end; and flags has no bit but RF_UUID.
 * Noise that happens to hold "abba", or a magic straddling noise and a real
 * request, almost never is; the search then resumes one byte on.
 */
function requestShaped(c: Buffer): boolean {
  if (((c[OFF.flags] as number) & ~RF_UUID) !== 0) return false;
  const field = c.subarray(OFF.domain, OFF.domain + MAX_DOMAIN_LENGTH);
  const nul = field.indexOf(0);
  if (nul < 0) return false;
  for (let i = nul + 1; i < field.length; i++) if (field[i] !== 0) return false;
  return true;
}

/** How many of `b`'s last bytes are a proper prefix of the magic (0..3). */
function tailPrefix(b: Buffer): number {
  for (let k = Math.min(MAGIC_BYTES.length - 1, b.length); k > 0; k--) {
    if (b.subarray(b.length - k).equals(MAGIC_BYTES.subarray(0, k))) return k;
  }
  return 0;
}
