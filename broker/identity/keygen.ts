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

export function generateEd25519(comment = ''): KeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { d: string; x: string };
  const seed = Buffer.from(jwk.d, 'base64url');
  const pub = Buffer.from(jwk.x, 'base64url');
  if (seed.length !== 32 || pub.length !== 32) throw new Error('ed25519 key of unexpected size');
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
