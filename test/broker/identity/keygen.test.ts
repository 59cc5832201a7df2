// ed25519 keys made with node:crypto in OpenSSH's formats: read back by the
// real OpenSSH (ssh-keygen) and by ssh2, every time (ssh2's own generator
// fails on about one key in 256).
import test from 'ava';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../../broker/identity/keygen.js';
import { tempDir } from '../../helpers.js';

test('2,000 generated pairs all parse with ssh2, private and public halves agreeing', (t) => {
  let bad = 0;
  for (let i = 0; i < 2000; i++) {
    const pair = generateEd25519(`k${i}`);
    const priv = ssh2.utils.parseKey(pair.private);
    const pub = ssh2.utils.parseKey(pair.public);
    if (priv instanceof Error || pub instanceof Error || Array.isArray(priv) || Array.isArray(pub)) bad++;
    else if (!priv.getPublicSSH().equals(pub.getPublicSSH())) bad++;
  }
  t.is(bad, 0);
});

test('OpenSSH reads the private key and derives the same public key line', async (t) => {
  const dir = tempDir('fb-keygen-');
  for (let i = 0; i < 20; i++) {
    const pair = generateEd25519(`node-${i}`);
    const file = join(dir, `key-${i}`);
    writeFileSync(file, pair.private, { mode: 0o600 });
    const r = await execa('ssh-keygen', ['-y', '-f', file], { reject: false, stdin: 'ignore', timeout: 30_000 });
    t.is(r.exitCode, 0, r.stderr);
    t.is(String(r.stdout).trim().split(' ').slice(0, 2).join(' '), pair.public.split(' ').slice(0, 2).join(' '));
  }
});
