// A guest whose key the broker does not take (never registered, or revoked by
// a reload) reads which key was refused, by its fingerprint, and by which
// broker, not ssh2's "All configured authentication methods failed". The
// plugin as built (plugin/dist/fence_broker) against the real daemon; the
// fingerprint is the one the broker's audit log names for the refusal.
import test from 'ava';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { projectPath } from '../../common/paths.js';
import { fingerprintOf } from '../../common/fingerprint.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { tempDir, until } from '../helpers.js';

const PLUGIN = projectPath('plugin', 'dist', 'fence_broker');

const fingerprintOfFile = (pub: string): string => {
  const parsed = ssh2.utils.parseKey(pub);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error('a generated key does not parse');
  return fingerprintOf(parsed.getPublicSSH());
};

const status = (d: Daemon, keyFile: string) =>
  execa(process.execPath, [PLUGIN, '-o', 'status', '-n', 'blue-1', '-a', `127.0.0.1:${d.port}`, '-k', keyFile, '--host-key-fingerprint', d.fingerprint], { reject: false, timeout: 120_000 });

/** The refusal's fingerprint as the broker audited it. */
const audited = (d: Daemon, fingerprint: string): boolean => d.auditAll().some((l) => l.event === 'refusal' && l.kind === 'auth_unknown_key' && l.fingerprint === fingerprint);

test('an unregistered key: the plugin names it, its fingerprint and the broker that refused it', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } } });
  try {
    const stranger = generateEd25519('stranger');
    const keyFile = join(tempDir('fb-stranger-'), 'id_ed25519');
    writeFileSync(keyFile, stranger.private, { mode: 0o600 });
    const fp = fingerprintOfFile(stranger.public);
    const r = await status(d, keyFile);
    t.not(r.exitCode, 0);
    const said = `${r.stdout}${r.stderr}`;
    t.true(said.includes(`key ${fp} (${keyFile}) is not accepted by fence-broker at 127.0.0.1:${d.port}`), said);
    t.notRegex(said, /All configured authentication methods failed/);
    await until('the refusal audited', () => audited(d, fp), 30_000);
  } finally {
    await d.stop();
  }
});

test('a revoked key reads the same, and the registered key still works', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } } } });
  try {
    t.is((await status(d, d.key('blue-2'))).exitCode, 0, 'blue-2 gets in before the revocation');
    const reloaded = await d.reload((yaml) => yaml.split('\n').filter((l) => !/^ {6}blue-2:/.test(l)).join('\n'));
    t.is(reloaded.msg, 'reloaded');
    const r = await status(d, d.key('blue-2'));
    t.not(r.exitCode, 0);
    const { stdout } = await execa('ssh-keygen', ['-l', '-f', d.key('blue-2')]);
    const fp = /SHA256:[A-Za-z0-9+/]{43}/.exec(stdout)?.[0] ?? '(none)';
    t.true(`${r.stdout}${r.stderr}`.includes(`key ${fp} (${d.key('blue-2')}) is not accepted by fence-broker at 127.0.0.1:${d.port}`), `${r.stdout}${r.stderr}`);
    t.is((await status(d, d.key('blue-1'))).exitCode, 0);
  } finally {
    await d.stop();
  }
});
