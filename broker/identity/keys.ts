// SSH public keys: the only source of a requester's identity (docs/design.md §3.1).
import { createPublicKey } from 'node:crypto';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../../common/fingerprint.js';

export { fingerprintOf };

export interface PublicKey {
  type: string;
  /** "TYPE BLOB", re-parseable by ssh2 for signature checks. */
  text: string;
  /** The SSH wire-format blob, base64: what identifies the key (the comment does not). */
  blob: string;
  /** OpenSSH-style fingerprint, "SHA256:..." without padding, as `ssh-keygen -l` prints. */
  fingerprint: string;
}

/** RSA moduli below this are refused (NIST SP 800-57: 3072 bits for 128-bit security). */
export const MIN_RSA_BITS = 3072;

/** Parses one OpenSSH public key line; returns a reason string when it is not one, or is too weak. */
export function parsePublicKey(line: string): PublicKey | string {
  const parsed = ssh2.utils.parseKey(line);
  if (parsed instanceof Error) return parsed.message;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) return 'no key found';
  if (key.isPrivateKey()) return 'a private key; give the public key line';
  if (key.type === 'ssh-dss') return 'a DSA (ssh-dss) key; DSA is broken and refused: use ed25519';
  if (key.type === 'ssh-rsa') {
    const bits = createPublicKey(key.getPublicPEM()).asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return `an RSA key of ${bits} bits; at least ${MIN_RSA_BITS} are required (or use ed25519)`;
  }
  const blob = key.getPublicSSH();
  const b64 = blob.toString('base64');
  return { type: key.type, text: `${key.type} ${b64}`, blob: b64, fingerprint: fingerprintOf(blob) };
}

/**
 * Whether a public-key signature's algorithm is acceptable: RSA keys must sign
 * with SHA-2 (rsa-sha2-256/512); "ssh-rsa" signatures are SHA-1 and refused.
 * ssh2 reports an RSA key's type as "ssh-rsa" and the hash apart.
 */
export function signatureProblem(keyType: string, hashAlgo: string | undefined): string | undefined {
  if (keyType === 'ssh-dss') return 'DSA signatures are refused';
  if (keyType === 'ssh-rsa' && hashAlgo !== 'sha256' && hashAlgo !== 'sha512') return 'SHA-1 (ssh-rsa) signatures are refused; use rsa-sha2-256/512';
  return undefined;
}
