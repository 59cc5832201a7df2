// The root daemon never builds policy, and a signed bundle is checked before
// use (docs/design.md §3.10): bundles signed by the real OPA (`opa build -b
// --signing-key`), then tampered with, unsigned, or signed by another key, are
// refused by `fencectl check` (located) and by the daemon. A copy of the
// project whose Rego was edited shows the daemon loading the prebuilt bundle
// and never running opa, even on SIGHUP. The bundle built here is the same
// bytes from any path.
import test from 'ava';
import { execa } from 'execa';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { projectPath } from '../../../common/paths.js';
import { buildBundle, DEFAULT_BUNDLE, findOpa, readBundle } from '../../../broker/policy/bundle.js';
import { fenceBroker, fencectl, newPublicKey, tempDir } from '../../helpers.js';

const opa = await findOpa();
const work = tempDir('fb-signed-');
const rego = join(work, 'rego');
mkdirSync(rego);
cpSync(projectPath('policies', 'fencing.rego'), join(rego, 'fencing.rego'));

const keyPair = async (name: string) => {
  await execa('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072', '-out', join(work, `${name}.pem`)]);
  await execa('openssl', ['pkey', '-in', join(work, `${name}.pem`), '-pubout', '-out', join(work, `${name}.pub.pem`)]);
  return { priv: join(work, `${name}.pem`), pub: join(work, `${name}.pub.pem`) };
};
const signer = await keyPair('signer');
const stranger = await keyPair('stranger');

const build = async (out: string, signingKey?: string) => {
  const r = await execa(opa, ['build', '-b', '-t', 'wasm', '-e', 'fencing/decision', '-r', 'rev-signed', ...(signingKey ? ['--signing-key', signingKey] : []), '-o', out, rego], { reject: false });
  if (r.exitCode !== 0) throw new Error(`opa build: ${r.stderr}`);
  return out;
};
const signed = await build(join(work, 'signed.tar.gz'), signer.priv);
const unsigned = await build(join(work, 'unsigned.tar.gz'));
const byStranger = await build(join(work, 'stranger.tar.gz'), stranger.priv);

/** Unpacks a bundle, lets `edit` change its folder, packs it again. */
async function repack(src: string, name: string, edit: (dir: string) => void): Promise<string> {
  const dir = join(work, `${name}-x`);
  mkdirSync(dir);
  await execa('tar', ['-xzf', src, '-C', dir]);
  edit(dir);
  const out = join(work, `${name}.tar.gz`);
  await execa('tar', ['-czf', out, '-C', dir, '.']);
  return out;
}
const tampered = await repack(signed, 'tampered', (d) => writeFileSync(join(d, 'data.json'), '{"clusters":{}}\n'));
const extra = await repack(signed, 'extra', (d) => writeFileSync(join(d, 'extra.rego'), 'package fencing\n'));

/** A config using `bundle` and the signer's public key; line 6 is policy_bundle. */
function config(bundle: string): string {
  const dir = tempDir('fb-signed-cfg-');
  const file = join(dir, 'clusters.yaml');
  writeFileSync(
    file,
    [
      'broker:',
      '  listen: 127.0.0.1:0',
      '  host_key: host_ed25519',
      '  toolstack: { type: sim, state: sim.json }',
      '  audit_log: audit.jsonl',
      `  policy_bundle: ${bundle}`,
      `  policy_verification_key: ${signer.pub}`,
      'clusters:',
      '  blue:',
      '    domains: [blue-1, blue-2]',
      `    nodes: { blue-1: { key: "${newPublicKey('blue-1')}" } }`,
      '',
    ].join('\n'),
  );
  return file;
}

test('a bundle signed by the configured key is accepted and decides', async (t) => {
  const file = config(signed);
  const r = await fencectl(['check', '--config', file]);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /policy rev-signed/);
  const e = await fencectl(['explain', '--config', file, '--as', 'blue/blue-1', '--action', 'off', '--target', 'blue-2']);
  t.is(e.exitCode, 0, e.stderr);
});

for (const [what, bundle, why] of [
  ['tampered (data.json changed after signing)', () => tampered, /data\.json does not match its signed hash \(tampered\)/],
  ['with a file added after signing', () => extra, /extra\.rego is in the bundle but not signed/],
  ['unsigned', () => unsigned, /the bundle is not signed/],
  ['signed by another key', () => byStranger, /signature does not verify with the configured key/],
] as const) {
  test(`a bundle ${what} is refused by fencectl check (located) and by the daemon`, async (t) => {
    const file = config(bundle());
    const r = await fencectl(['check', '--config', file]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, why);
    t.true(r.stderr.startsWith(`${file}:6:`), r.stderr);
    const d = await fenceBroker(['--config', file]);
    t.is(d.exitCode, 2);
    t.regex(String(d.stderr), /refusing to start/);
  });
}

test('the daemon never builds policy: with policies/ edited, it loads the prebuilt bundle, warns, and never runs opa, even on SIGHUP', async (t) => {
  // A copy of the project (compiled code, policies, schema; node_modules linked).
  const proj = tempDir('fb-proj-');
  for (const part of ['dist', 'policies', 'schema', 'scripts', 'package.json']) cpSync(projectPath(part), join(proj, part), { recursive: true });
  symlinkSync(projectPath('node_modules'), join(proj, 'node_modules'));
  writeFileSync(join(proj, 'policies', 'fencing.rego'), readFileSync(join(proj, 'policies', 'fencing.rego'), 'utf8') + '\n# edited after the build\n');
  // A recording opa, first on PATH and named by $OPA: any run of it is a build attempt.
  const bin = join(proj, 'fake-bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'opa'), `#!/bin/sh\necho "$@" >> ${join(proj, 'opa-was-run')}\nexit 1\n`);
  chmodSync(join(bin, 'opa'), 0o755);
  const cfgDir = tempDir('fb-proj-cfg-');
  const cfg = join(cfgDir, 'clusters.yaml');
  writeFileSync(cfg, ['broker:', '  listen: 127.0.0.1:0', '  host_key: host_ed25519', '  toolstack: { type: sim, state: sim.json }', '  audit_log: audit.jsonl', 'clusters:', '  blue:', '    domains: [blue-1]', `    nodes: { blue-1: { key: "${newPublicKey('b')}" } }`, ''].join('\n'));
  const child = execa('node', [join(proj, 'dist', 'broker', 'main.js'), '--config', cfg], {
    reject: false,
    env: { PATH: `${bin}:${process.env.PATH ?? ''}`, OPA: join(bin, 'opa') },
    buffer: false,
    stderr: 'pipe',
  });
  let log = '';
  const seen = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} in: ${log}`)), 60_000);
      const check = () => {
        if (re.test(log)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stderr?.on('data', (b: Buffer) => {
        log += b.toString();
        check();
      });
      check();
    });
  try {
    await seen(/fence-broker ready/);
    t.regex(log, /policies\/ differ from the loaded bundle/);
    const reloaded = seen(/"msg":"reloaded"/);
    child.kill('SIGHUP');
    await reloaded;
    t.false(existsSync(join(proj, 'opa-was-run')), 'opa was never run by the daemon');
  } finally {
    child.kill('SIGTERM');
    await child;
  }
});

test('the bundle is reproducible: two copies of policies/ at different paths (other mtimes and modes) build the same bytes, naming no path of this machine', async (t) => {
  const copies = [join(tempDir('fb-repro-'), 'policies'), join(tempDir('fb-repro-'), 'deeper', 'clone', 'policies')];
  for (const [i, dir] of copies.entries()) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(projectPath('policies'))) {
      cpSync(projectPath('policies', name), join(dir, name));
      chmodSync(join(dir, name), i === 0 ? 0o644 : 0o600);
      utimesSync(join(dir, name), 1_000_000 * (i + 1), 1_000_000 * (i + 1));
    }
  }
  const built = [];
  for (const dir of copies) {
    const out = join(dir, '..', 'bundle.tar.gz');
    await buildBundle(out, dir);
    built.push({ dir, bytes: readFileSync(out), bundle: await readBundle(out) });
  }
  const [a, b] = built as [(typeof built)[0], (typeof built)[0]];
  t.is(a.bundle.sha256, b.bundle.sha256, 'wasm sha256');
  t.true(a.bytes.equals(b.bytes), 'bundle bytes');
  // The checkout's own bundle (npm run build) is the same too.
  t.is((await readBundle(DEFAULT_BUNDLE)).sha256, a.bundle.sha256, 'dist/policy/bundle.tar.gz');
  for (const { dir, bytes } of built) {
    const text = gunzipSync(bytes).toString('latin1');
    t.false(text.includes(dir), `the bundle names ${dir}`);
    t.false(text.includes(tmpdir()), `the bundle names ${tmpdir()}`);
  }
  // Sources under a relative name; the tarball's mtimes are opa's zero.
  const listing = await execa('tar', ['-tvzf', join(copies[0]!, '..', 'bundle.tar.gz')]);
  t.regex(listing.stdout, / \/policies\/fencing\.rego$/m);
  t.notRegex(listing.stdout, /_test\.rego/);
  for (const line of listing.stdout.split('\n')) t.regex(line, / 1970-01-01 00:00 /);
});
