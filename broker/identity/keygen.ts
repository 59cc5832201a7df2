// ed25519 key pairs in OpenSSH's formats, from node:crypto. ssh2's own
// generateKeyPairSync drops a leading zero byte of the public key (about one
// key in 256 comes out malformed, private half included), so neither the host
// key nor node keys are made with it. Formats: OpenSSH's PROTOCOL.key
// (unencrypted "openssh-key-v1") and the one-line public key.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

const sshString = (b: Buffer | string): Buffer => {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
};

const uint32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

export interface KeyPair {
  /** "-----BEGIN OPENSSH PRIVATE KEY-----" ..., unencrypted. */
  private: string;
  /** "ssh-ed25519 AAAA... comment" */
  public: string;
}

// The DER forms of an ed25519 key end in its raw 32 bytes: PKCS#8 in the
// seed (RFC 8410 §7), SPKI in the public key.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function generateEd25519(comment = ''): KeyPair {
  // The encodings are asked of the generation itself, never exported from the
  // KeyObject afterwards: on Node 20, exporting a just-generated ed25519 key
  // as JWK deadlocks when a GC runs during the export and finalizes the
  // generation job, whose destructor takes the key's lock that the export
  // holds (seen as a hang after some thousand keys; reproduced with
  // --gc-interval=2).
  const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
    publicKeyEncoding: { type: 'spki', format: 'der' },
  });
  if (
    privateKey.length !== PKCS8_ED25519_PREFIX.length + 32 ||
    !privateKey.subarray(0, PKCS8_ED25519_PREFIX.length).equals(PKCS8_ED25519_PREFIX) ||
    publicKey.length !== SPKI_ED25519_PREFIX.length + 32 ||
    !publicKey.subarray(0, SPKI_ED25519_PREFIX.length).equals(SPKI_ED25519_PREFIX)
  ) {
    throw new Error('ed25519 key generation: DER of unexpected form');
  }
  const seed = privateKey.subarray(PKCS8_ED25519_PREFIX.length);
  const pub = publicKey.subarray(SPKI_ED25519_PREFIX.length);
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  const secret = [check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)];
  let section = Buffer.concat(secret);
  // Padded with 1, 2, 3, ... to the cipher block size (8 for "none").
  const pad = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(blob), sshString(section)]);
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return {
    private: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    public: `ssh-ed25519 ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`,
  };
}
