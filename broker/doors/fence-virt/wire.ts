// fence_virtd's request packet (fence_req_t) and its constants, written from
// the facts of fence-agents' agents/virt/include/xvm.h: 176 bytes, packed.
// The multi-byte integers (port, seqno, family) travel in the sender's host
// order, and fence_virtd swaps them only on big-endian hosts, so on the wire
// they are little-endian; the address is raw network bytes, as inet_pton
// writes it.
import { createHash } from 'node:crypto';

export const REQUEST_SIZE = 176;
export const MAX_DOMAIN_LENGTH = 64;
/** sizeof(struct sockaddr_in6): room for any address. */
export const MAX_ADDR_LENGTH = 28;
/** SHA-512's length: every hash field, challenge and response is this long, the digest zero-padded. */
export const HASH_FIELD = 64;

// Offsets inside the packet.
const OFF = { op: 0, hashtype: 1, addrlen: 2, flags: 3, domain: 4, address: 68, port: 96, random: 98, seqno: 104, family: 108, hash: 112 } as const;

export const OP = { null: 0, off: 1, reboot: 2, on: 3, status: 4, devstatus: 5, hostlist: 6 } as const;
export type OpName = keyof typeof OP;
export const OP_NAMES: Record<number, OpName> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k as OpName]));

/** The hash of a request and of the challenges; the numbers are the same for both. */
export const HASH = { none: 0, sha1: 1, sha256: 2, sha512: 3 } as const;
export type HashName = keyof typeof HASH;
export const HASH_NAMES: Record<number, HashName> = { 0: 'none', 1: 'sha1', 2: 'sha256', 3: 'sha512' };

/** flags: the domain field holds a UUID. */
export const RF_UUID = 0x1;

/** The one byte that ends every exchange. */
export const RESP = { success: 0, fail: 1, off: 2, perm: 3, hostlist: 253 } as const;

/** Address families as Linux numbers them (AF_INET, AF_INET6). */
export const FAMILY = { ipv4: 2, ipv6: 10 } as const;

/** hostlist entries (host_state_t): domain[64] uuid[64] state pad; all zero ends the list. */
export const HOST_STATE_SIZE = 130;
/** The state a hostlist entry carries: the client prints "on" for 1 only (libvirt's running), off otherwise (libvirt's shut off). */
/** host_state_t's state: libvirt's domain states (0 no state, 1 running, 5 shut off). */
export const HOST_STATE = { none: 0, on: 1, off: 5 } as const;

export interface FenceVirtRequest {
  op: number;
  hashtype: number;
  flags: number;
  /** The domain field up to its first NUL, as latin1; checked against the name pattern later, not here. */
  domain: string;
  /** The address field's first addrlen bytes. */
  address: Buffer;
  port: number;
  family: number;
  seqno: number;
  random: Buffer;
  /** The hash field, all 64 bytes. */
  hash: Buffer;
  /** The packet as received. */
  raw: Buffer;
}

export class WireError extends Error {
  override name = 'WireError';
}

/** Decodes one packet; throws WireError saying what was wrong and where. */
export function decodeRequest(packet: Buffer): FenceVirtRequest {
  if (packet.length !== REQUEST_SIZE) {
    throw new WireError(`packet of ${packet.length} bytes; a fence_virt request is exactly ${REQUEST_SIZE}`);
  }
  const addrlen = packet[OFF.addrlen] as number;
  if (addrlen > MAX_ADDR_LENGTH) throw new WireError(`addrlen ${addrlen} at byte ${OFF.addrlen} exceeds the address field (${MAX_ADDR_LENGTH})`);
  const domainField = packet.subarray(OFF.domain, OFF.domain + MAX_DOMAIN_LENGTH);
  const nul = domainField.indexOf(0);
  if (nul < 0) throw new WireError(`domain field (bytes ${OFF.domain}-${OFF.domain + MAX_DOMAIN_LENGTH - 1}) is not NUL-terminated`);
  return {
    op: packet[OFF.op] as number,
    hashtype: packet[OFF.hashtype] as number,
    flags: packet[OFF.flags] as number,
    domain: domainField.subarray(0, nul).toString('latin1'),
    address: Buffer.from(packet.subarray(OFF.address, OFF.address + addrlen)),
    port: packet.readUInt16LE(OFF.port),
    random: Buffer.from(packet.subarray(OFF.random, OFF.random + 6)),
    seqno: packet.readUInt32LE(OFF.seqno),
    family: packet.readUInt32LE(OFF.family),
    hash: Buffer.from(packet.subarray(OFF.hash, OFF.hash + HASH_FIELD)),
    raw: Buffer.from(packet),
  };
}

/** The packet with its hash field zeroed: what the hash is computed over (after the key). */
export function unsignedCopy(packet: Buffer): Buffer {
  const copy = Buffer.from(packet);
  copy.fill(0, OFF.hash, OFF.hash + HASH_FIELD);
  return copy;
}

/** Builds a packet, as a client does (tests, benchmarks); signed with `key` unless hashtype is none. */
export function encodeRequest(r: Omit<FenceVirtRequest, 'raw' | 'hash'>, key?: Buffer): Buffer {
  const b = Buffer.alloc(REQUEST_SIZE);
  const domain = Buffer.from(r.domain, 'latin1');
  if (domain.length > MAX_DOMAIN_LENGTH - 1) throw new WireError(`domain of ${domain.length} bytes; at most ${MAX_DOMAIN_LENGTH - 1}`);
  if (r.address.length > MAX_ADDR_LENGTH) throw new WireError(`address of ${r.address.length} bytes; at most ${MAX_ADDR_LENGTH}`);
  b[OFF.op] = r.op;
  b[OFF.hashtype] = r.hashtype;
  b[OFF.addrlen] = r.address.length;
  b[OFF.flags] = r.flags;
  domain.copy(b, OFF.domain);
  r.address.copy(b, OFF.address);
  b.writeUInt16LE(r.port, OFF.port);
  r.random.copy(b, OFF.random, 0, 6);
  b.writeUInt32LE(r.seqno >>> 0, OFF.seqno);
  b.writeUInt32LE(r.family >>> 0, OFF.family);
  if (key && r.hashtype !== HASH.none) {
    const name = HASH_NAMES[r.hashtype];
    if (!name || name === 'none') throw new WireError(`unknown hash type ${r.hashtype}`);
    digestInto(name, [key, b]).copy(b, OFF.hash);
  }
  return b;
}

/** hash(parts...) into a 64-byte field, zero-padded (how fence_virtd fills MAX_HASH_LENGTH). */
export function digestInto(name: Exclude<HashName, 'none'>, parts: Buffer[]): Buffer {
  const h = createHash(name);
  for (const p of parts) h.update(p);
  const out = Buffer.alloc(HASH_FIELD);
  h.digest().copy(out);
  return out;
}

/** hostlist's body: RESP_HOSTLIST, one host_state_t per domain, an all-zero terminator (then the reply byte). */
export function hostlistBody(domains: readonly string[], states: Record<string, string> | undefined): Buffer {
  const parts = [Buffer.from([RESP.hostlist])];
  for (const d of domains) {
    const e = Buffer.alloc(HOST_STATE_SIZE);
    e.write(d.slice(0, MAX_DOMAIN_LENGTH - 1), 0, 'latin1');
    // Off only when the toolstack said off; anything else (paused, crashed, unknown) is no state, never off.
    const state = states?.[d];
    e[2 * MAX_DOMAIN_LENGTH] = state === 'on' ? HOST_STATE.on : state === 'off' ? HOST_STATE.off : HOST_STATE.none;
    parts.push(e);
  }
  parts.push(Buffer.alloc(HOST_STATE_SIZE));
  return Buffer.concat(parts);
}
