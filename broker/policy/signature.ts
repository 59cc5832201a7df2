// Signed policy bundles in OPA's own format (`opa build -b --signing-key`):
// `.signatures.json` holds one JWT whose payload lists every file of the
// bundle with its hash. opa-wasm checks none of it, so the broker does, here,
// before a bundle is used: the signature against the configured public key,
// then every file against its hash, and no file unlisted. Only asymmetric
// algorithms: a verification secret on the host could also sign.
import { createHash } from 'node:crypto';
import { compactVerify, importSPKI } from 'jose';

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const HASHES: Record<string, string> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };
export const SIGNATURES_FILE = '.signatures.json';

/** A bundle that must not be used, and why. */
export class BundleSignatureError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BundleSignatureError';
  }
}

/** Keys sorted at every level, compact, and <, >, & escaped as Go's encoder does: how OPA hashes JSON files. */
function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(sort(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The hash OPA records for a bundle file: JSON files by their canonical form, others by their bytes. */
export function fileHash(name: string, bytes: Buffer, algorithm: string): string {
  const alg = HASHES[algorithm];
  if (!alg) throw new BundleSignatureError(`${name}: hash algorithm ${JSON.stringify(algorithm)} not accepted (SHA-256, SHA-384 or SHA-512)`);
  let data: Buffer | string = bytes;
  if (name.endsWith('.json') || name === '.manifest') {
    try {
      data = canonicalJson(JSON.parse(bytes.toString('utf8')));
    } catch (err) {
      throw new BundleSignatureError(`${name}: not JSON`, { cause: err });
    }
  }
  return createHash(alg).update(data).digest('hex');
}

interface SignedFile {
  name: string;
  hash: string;
  algorithm?: string;
}

/**
 * Verifies a bundle's files (name → bytes, names without a leading slash)
 * against its .signatures.json and the PEM public key. Throws
 * BundleSignatureError saying what is wrong; returns the signing key id.
 */
export async function verifyBundle(files: Map<string, Buffer>, publicKeyPem: string, where: string): Promise<string | undefined> {
  const sigFile = files.get(SIGNATURES_FILE);
  if (!sigFile) throw new BundleSignatureError(`${where}: the bundle is not signed (no ${SIGNATURES_FILE}) and a verification key is configured`);
  let token: unknown;
  try {
    token = (JSON.parse(sigFile.toString('utf8')) as { signatures?: unknown[] }).signatures;
  } catch (err) {
    throw new BundleSignatureError(`${where}: ${SIGNATURES_FILE} is not JSON`, { cause: err });
  }
  if (!Array.isArray(token) || token.length !== 1 || typeof token[0] !== 'string') {
    throw new BundleSignatureError(`${where}: ${SIGNATURES_FILE} must hold exactly one signature`);
  }
  const jwt = token[0];
  let alg: string;
  try {
    alg = String((JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown }).alg);
  } catch (err) {
    throw new BundleSignatureError(`${where}: the signature's header is unreadable`, { cause: err });
  }
  if (!ALGORITHMS.includes(alg)) throw new BundleSignatureError(`${where}: signature algorithm ${JSON.stringify(alg)} not accepted (one of ${ALGORITHMS.join(', ')})`);
  let payload: { files?: SignedFile[]; keyid?: string };
  try {
    const key = await importSPKI(publicKeyPem, alg);
    const verified = await compactVerify(jwt, key, { algorithms: [alg] });
    payload = JSON.parse(new TextDecoder().decode(verified.payload)) as typeof payload;
  } catch (err) {
    throw new BundleSignatureError(`${where}: signature does not verify with the configured key`, { cause: err });
  }
  const signed = payload.files;
  if (!Array.isArray(signed) || signed.length === 0) throw new BundleSignatureError(`${where}: the signature lists no files`);
  const listed = new Set<string>();
  for (const f of signed) {
    const name = String(f.name).replace(/^\/+/, '');
    listed.add(name);
    const bytes = files.get(name);
    if (!bytes) throw new BundleSignatureError(`${where}: ${name} is signed but missing from the bundle`);
    if (fileHash(name, bytes, f.algorithm ?? 'SHA-256') !== f.hash) throw new BundleSignatureError(`${where}: ${name} does not match its signed hash (tampered)`);
  }
  for (const name of files.keys()) {
    if (name !== SIGNATURES_FILE && !listed.has(name)) throw new BundleSignatureError(`${where}: ${name} is in the bundle but not signed`);
  }
  return payload.keyid;
}
