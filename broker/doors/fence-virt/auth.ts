// fence_virtd's "simple auth", from the facts of fence-agents'
// common/simple_auth.c: a request is signed with hash(key ‖ packet with its
// hash field zeroed); a challenge is 64 random bytes and its response
// hash(key ‖ challenge), zero-padded to 64. Both ends challenge each other over
// the connection: the server answers the client's challenge first, then sets
// its own. Comparisons are constant-time.
import { createHash, randomBytes, timingSafeEqual, type Hash } from 'node:crypto';
import { HASH_FIELD, digestInto, unsignedCopy, type HashName } from './wire.js';

export type StrongHash = Extract<HashName, 'sha256' | 'sha512'>;
export const STRONG_HASHES: readonly StrongHash[] = ['sha256', 'sha512'];

/** A key ready to verify: its hash states after the key bytes, so each try hashes only the packet. */
export interface PreparedKey {
  key: Buffer;
  states: Record<StrongHash, Hash>;
}

export function prepareKey(key: Buffer): PreparedKey {
  const states = {} as Record<StrongHash, Hash>;
  for (const h of STRONG_HASHES) states[h] = createHash(h).update(key);
  return { key, states };
}

/** The 64-byte hash field a request signed with `k` carries. */
function expectedHash(k: PreparedKey, hash: StrongHash, unsigned: Buffer): Buffer {
  const out = Buffer.alloc(HASH_FIELD);
  k.states[hash].copy().update(unsigned).digest().copy(out);
  return out;
}

/**
 * The first of `keys` whose hash of the packet matches its hash field, or
 * undefined. Every key is tried whatever matched, so the time taken says
 * nothing about which key (or whether one) did.
 */
export function findSigner<K extends { prepared: PreparedKey }>(raw: Buffer, hash: StrongHash, hashField: Buffer, keys: readonly K[]): K | undefined {
  const unsigned = unsignedCopy(raw);
  let found: K | undefined;
  for (const k of keys) {
    if (timingSafeEqual(expectedHash(k.prepared, hash, unsigned), hashField) && !found) found = k;
  }
  return found;
}

/** What the client must answer to `challenge`, and what the broker answers to the client's. */
export const challengeResponse = (key: Buffer, hash: StrongHash, challenge: Buffer): Buffer => digestInto(hash, [key, challenge]);

export const newChallenge = (): Buffer => randomBytes(HASH_FIELD);

export const responseMatches = (key: Buffer, hash: StrongHash, challenge: Buffer, response: Buffer): boolean =>
  response.length === HASH_FIELD && timingSafeEqual(challengeResponse(key, hash, challenge), response);
