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

// Node 20 deadlocks when a JWK export of a just-generated key is interrupted
// by a GC that finalizes the generation job (both take the key's lock). A GC
// forced every N allocations makes that interleaving certain for some N; which
// N depends on the code around it: with the old generator (generate, then
// export as JWK) this test failed, its child hanging at N = 2; run by hand
// the same loop hung at 3, 9 and 11 too. The fixed one hangs at none.
test('3,000 keys with a GC forced every 1-12 allocations: generation never deadlocks', async (t) => {
  const keygen = new URL('../../../broker/identity/keygen.js', import.meta.url).href;
  const script = `const { generateEd25519 } = await import(${JSON.stringify(keygen)}); for (let i = 0; i < 3000; i++) generateEd25519('k' + i); console.log('done');`;
  for (let interval = 1; interval <= 12; interval++) {
    // The bound only catches the hang; each child takes about 1 s.
    const r = await execa('node', [`--gc-interval=${interval}`, '--input-type=module', '-e', script], { reject: false, timeout: 120_000, stdin: 'ignore' });
    t.false(r.timedOut, `--gc-interval=${interval}: generation hung (a JWK export of a fresh key deadlocked with the GC)`);
    t.is(r.exitCode, 0, `--gc-interval=${interval}: ${r.stderr}`);
    t.is(String(r.stdout).trim(), 'done');
  }
});
