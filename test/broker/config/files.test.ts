// Strict files and keys (docs/design.md §3.10), through the real `fencectl check`
// and daemon: files the root daemon trusts, and the directories above them,
// writable by group or others or owned by another user are refused, located;
// a symlinked host key is refused; RSA signatures must be SHA-2, and the
// algorithms the broker advertises (server-sig-algs) are well-formed.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { signatureProblem } from '../../../broker/identity/keys.js';
import { startDaemon } from '../../broker-daemon.js';
import { fenceBroker, fencectl, newPublicKey, tempDir } from '../../helpers.js';

const test = anyTest as TestFn;
const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('CI runs as root: the ownership tests chown files');
const rootTest = (root ? anyTest : anyTest.skip) as TestFn;

/** A config in its own folder; lines: 1 broker, 2 listen, 3 host_key, 4 toolstack, 5 audit_log. */
function setup(): { dir: string; file: string } {
  const dir = tempDir('fb-strict-');
  mkdirSync(join(dir, 'state'));
  const file = join(dir, 'clusters.yaml');
  writeFileSync(
    file,
    [
      'broker:',
      '  listen: 127.0.0.1:0',
      '  host_key: host_ed25519',
      '  toolstack: { type: sim, state: state/sim.json }',
      '  audit_log: audit.jsonl',
      'clusters:',
      '  blue:',
      '    domains: [blue-1]',
      `    nodes: { blue-1: { key: "${newPublicKey('blue-1')}" } }`,
      '',
    ].join('\n'),
  );
  return { dir, file };
}

const located = async (file: string, line: number, message: RegExp) => {
  const r = await fencectl(['check', '--config', file]);
  const hit = r.stderr.split('\n').find((l) => message.test(l));
  return { exitCode: r.exitCode, hit, at: hit?.startsWith(`${file}:${line}:`), stderr: r.stderr };
};

test('a clean setup in a private folder under sticky /tmp passes', async (t) => {
  const { file } = setup();
  const r = await fencectl(['check', '--config', file]);
  t.is(r.exitCode, 0, r.stderr);
});

test('a world-writable config is refused by fencectl check (located) and by the daemon', async (t) => {
  const { file } = setup();
  chmodSync(file, 0o666);
  const r = await located(file, 1, /config .*clusters\.yaml: is writable by group and others \(mode 666\)/);
  t.is(r.exitCode, 1);
  t.true(r.at, r.stderr);
  const d = await fenceBroker(['--config', file]);
  t.is(d.exitCode, 2);
  t.regex(String(d.stderr), /writable by group and others[\s\S]*refusing to start/);
});

test('a group-writable directory above the sim state is refused, located at the state', async (t) => {
  const { dir, file } = setup();
  chmodSync(join(dir, 'state'), 0o775);
  const r = await located(file, 4, /directory .*\/state above the sim state is writable by group/);
  t.is(r.exitCode, 1);
  t.true(r.at, r.stderr);
});

test('a symlinked host key is refused', async (t) => {
  const { dir, file } = setup();
  const real = join(tempDir(), 'real-key');
  writeFileSync(real, 'whatever', { mode: 0o600 });
  symlinkSync(real, join(dir, 'host_ed25519'));
  const r = await located(file, 3, /host key .* is a symlink/);
  t.is(r.exitCode, 1);
  t.true(r.at, r.stderr);
});

rootTest('files owned by another non-root user are refused: the config, and a host key not the broker\'s', async (t) => {
  const { dir, file } = setup();
  chownSync(file, 65534, 65534);
  const c = await located(file, 1, /config .* owned by uid 65534, neither root nor the broker's user/);
  t.is(c.exitCode, 1);
  t.true(c.at, c.stderr);
  chownSync(file, 0, 0);
  const key = join(dir, 'host_ed25519');
  writeFileSync(key, 'x', { mode: 0o600 });
  chownSync(key, 65534, 65534);
  const k = await located(file, 3, /host key .* owned by uid 65534, not the broker's user/);
  t.is(k.exitCode, 1);
  t.true(k.at, k.stderr);
});

test('RSA keys sign with SHA-2 only: a SHA-1 (ssh-rsa) signature is refused; the advertised algorithms are well-formed, no ssh-rsa, no ssh-dss', async (t) => {
  const keyDir = tempDir('fb-rsa-');
  const rsa = join(keyDir, 'id_rsa');
  await execa('ssh-keygen', ['-q', '-t', 'rsa', '-b', '3072', '-N', '', '-C', 'rsa-node', '-f', rsa], { stdin: 'ignore' });
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } }, reuseKeys: { 'blue-1': rsa } });
  try {
    const sha2 = await d.ssh('blue-1', 'status blue-1', ['-vvv']);
    t.is(sha2.exitCode, 0, sha2.stderr.slice(-2000));
    const sigAlgs = /server-sig-algs=<([^>]*)>/.exec(sha2.stderr)?.[1];
    t.truthy(sigAlgs, 'the broker advertises server-sig-algs');
    const algs = String(sigAlgs).split(',');
    t.true(algs.every((a) => /^[a-z0-9@.-]+$/.test(a) && /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512))$/.test(a)), String(sigAlgs));
    t.false(algs.includes('ssh-dss'));
    t.false(algs.includes('ssh-rsa'));
    // OpenSSH, told ssh-rsa only, sees it is not advertised and gives up; the broker would refuse it anyway (below).
    const sha1 = await d.ssh('blue-1', 'status blue-1', ['-o', 'PubkeyAcceptedAlgorithms=ssh-rsa']);
    t.is(sha1.exitCode, 255);
    t.regex(sha1.stderr, /Permission denied/);
    t.is(d.audit().length, 1, 'only the SHA-2 request got in');
    t.regex(String(signatureProblem('ssh-rsa', undefined)), /SHA-1 \(ssh-rsa\) signatures are refused/);
    t.is(signatureProblem('ssh-rsa', 'sha512'), undefined);
    t.is(signatureProblem('ssh-rsa', 'sha256'), undefined);
    t.is(signatureProblem('ssh-ed25519', undefined), undefined);
  } finally {
    await d.stop();
  }
});

/** setup() with the serial door: its channels folder `chan` at line 7 (toolstack virsh, which channels need). */
function withChannels(): { dir: string; file: string; chan: string } {
  const dir = tempDir('fb-strict-');
  const chan = join(dir, 'chan');
  const file = join(dir, 'clusters.yaml');
  writeFileSync(
    file,
    [
      'broker:',
      '  listen: 127.0.0.1:0',
      '  host_key: host_ed25519',
      '  toolstack: { type: virsh, uri: "test:///default" }',
      '  audit_log: audit.jsonl',
      '  fence_virt:',
      `    channels: { dir: ${chan} }`,
      'clusters:',
      '  blue:',
      '    domains: [blue-1]',
      `    nodes: { blue-1: { key: "${newPublicKey('blue-1')}" } }`,
      '',
    ].join('\n'),
  );
  return { dir, file, chan };
}

test('the channels folder: QEMU\'s group may write there (0770 passes); writable by others, a symlink or a file is refused, located at channels.dir', async (t) => {
  const ok = withChannels();
  mkdirSync(ok.chan, { mode: 0o700 });
  chmodSync(ok.chan, 0o770);
  const r = await fencectl(['check', '--config', ok.file]);
  t.is(r.exitCode, 0, r.stderr);

  const open = withChannels();
  mkdirSync(open.chan, { mode: 0o700 });
  chmodSync(open.chan, 0o777);
  const o = await located(open.file, 7, /channels folder .*\/chan: is writable by others \(mode 777\): anyone could put a socket there and speak as a domain/);
  t.is(o.exitCode, 1);
  t.true(o.at, o.stderr);

  const link = withChannels();
  const real = tempDir();
  symlinkSync(real, link.chan);
  const l = await located(link.file, 7, /channels folder .*\/chan: is a symlink/);
  t.is(l.exitCode, 1);
  t.true(l.at, l.stderr);

  const file = withChannels();
  writeFileSync(file.chan, '');
  const f = await located(file.file, 7, /channels folder .*\/chan: is not a directory/);
  t.is(f.exitCode, 1);
  t.true(f.at, f.stderr);
});
