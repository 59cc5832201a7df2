// fencectl keygen through the real CLI and the real daemon: the entry it
// prints, pasted into clusters.yaml, passes fencectl check, and after a
// reload the new node's key gets it in with the printed fingerprint pinned.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../broker-daemon.js';
import { fencectl, newPublicKey, tempDir } from '../helpers.js';
import { request } from '../ssh-client.js';
import { loadOrCreateHostKey } from '../../broker/doors/ssh.js';

test('keygen: a new node key, the clusters.yaml entry and the plugin parameters; check accepts the entry; the key works after a reload', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } } });
  try {
    const out = tempDir('fb-keygen-');
    const r = await fencectl(['keygen', '--config', d.config, '--cluster', 'blue', '--node', 'blue-2', '--out', out]);
    t.is(r.exitCode, 0, String(r.stderr));
    const text = String(r.stdout);
    t.is(statSync(join(out, 'blue-2')).mode & 0o777, 0o600);
    t.true(existsSync(join(out, 'blue-2.pub')));
    const entry = /^ {6}blue-2: \{ key: "ssh-ed25519 [A-Za-z0-9+/=]+ blue\/blue-2" \}$/m.exec(text)?.[0];
    t.truthy(entry, text);
    t.regex(text, new RegExp(`^  ip=127\\.0\\.0\\.1:0$`, 'm'), 'the listen address as configured');
    t.true(text.includes(`host_key_fingerprint=${d.fingerprint}`), text);

    // Pasted under clusters.blue.nodes: check passes, and after a reload the key gets in.
    const reloaded = await d.reload((yaml) => yaml.replace(/^( {4}nodes:\n)/m, `$1${entry}\n`));
    t.is(reloaded.msg, 'reloaded');
    t.is((await fencectl(['check', '--config', d.config])).exitCode, 0);
    const answer = await request({ ...d, key: (name: string) => (name === 'blue-2' ? join(out, 'blue-2') : d.key(name)) }, 'blue-2', 'status blue-1');
    t.like(answer.reply, { ok: true, state: 'on' });
    t.like(d.audit().at(-1), { cluster: 'blue', node: 'blue-2' });

    // Never over an existing key, never a second key for a node.
    const again = await fencectl(['keygen', '--config', d.config, '--cluster', 'blue', '--node', 'blue-3', '--out', out]);
    t.is(again.exitCode, 0);
    const twice = await fencectl(['keygen', '--config', d.config, '--cluster', 'blue', '--node', 'blue-3', '--out', out]);
    t.is(twice.exitCode, 2);
    t.regex(String(twice.stderr), /exists; not overwritten/);
    // A node that has a key gets a new one to replace it with (the example config's placeholders): the config is only read.
    const known = await fencectl(['keygen', '--config', d.config, '--cluster', 'blue', '--node', 'blue-2', '--out', tempDir('fb-keygen-')]);
    t.is(known.exitCode, 0, String(known.stderr));
    t.regex(String(known.stdout), /replace the key of clusters\.blue\.nodes\.blue-2 \(the old key is refused from the reload on\):\n {6}blue-2: \{ key: "ssh-ed25519 [A-Za-z0-9+/=]+ blue\/blue-2" \}\n/);
    t.false(String(known.stdout).includes(entry as string), 'a new key, not the one in the config');
    const badName = await fencectl(['keygen', '--config', d.config, '--cluster', 'blue', '--node', '-rf', '--out', out]);
    t.is(badName.exitCode, 2);
    t.is(readFileSync(join(out, 'blue-2.pub'), 'utf8').split('\n')[0]?.startsWith('ssh-ed25519 '), true);
  } finally {
    await d.stop();
  }
});

test('keygen without a host key refuses before writing anything, so running it again after the key exists works', async (t) => {
  const base = tempDir('fb-keygen-nohost-');
  const config = join(base, 'clusters.yaml');
  writeFileSync(config, ['broker:', '  listen: 127.0.0.1:2222', '  host_key: host_ed25519', '  toolstack: { type: sim, state: sim.json }', '  audit_log: audit.jsonl', 'clusters:', '  blue:', '    domains: [blue-1, blue-2]', `    nodes: { blue-1: { key: "${newPublicKey('b')}" } }`, ''].join('\n'));
  const keygen = () => fencectl(['keygen', '--config', config, '--cluster', 'blue', '--node', 'blue-2', '--out', join(base, 'keys')]);
  const refused = await keygen();
  t.is(refused.exitCode, 2);
  t.regex(String(refused.stderr), new RegExp(`host key ${join(base, 'host_ed25519')} does not exist: install\\.sh creates it, as does the broker's first start; nothing written`));
  t.deepEqual(readdirSync(base).sort(), ['clusters.yaml']);
  const { fingerprint } = loadOrCreateHostKey(join(base, 'host_ed25519')); // what install.sh does
  const made = await keygen();
  t.is(made.exitCode, 0, String(made.stderr));
  t.true(String(made.stdout).includes(`host_key_fingerprint=${fingerprint}`), String(made.stdout));
});

test('keygen --out: a missing folder is created 0700 (nested too); a file in the way is named, and nothing is written', async (t) => {
  const base = tempDir('fb-keygen-out-');
  loadOrCreateHostKey(join(base, 'host_ed25519'));
  const config = join(base, 'clusters.yaml');
  writeFileSync(config, ['broker:', '  listen: 127.0.0.1:0', '  host_key: host_ed25519', '  toolstack: { type: sim, state: sim.json }', '  audit_log: audit.jsonl', 'clusters:', '  blue:', '    domains: [blue-1, blue-2]', `    nodes: { blue-1: { key: "${newPublicKey('b')}" } }`, ''].join('\n'));
  const keygen = (out: string) => fencectl(['keygen', '--config', config, '--cluster', 'blue', '--node', 'blue-2', '--out', out]);

  const nested = join(base, 'keys', 'blue');
  const made = await keygen(nested);
  t.is(made.exitCode, 0, String(made.stderr));
  for (const d of [join(base, 'keys'), nested]) t.is(statSync(d).mode & 0o777, 0o700, d);
  t.is(statSync(join(nested, 'blue-2')).mode & 0o777, 0o600);

  const file = join(base, 'a-file');
  writeFileSync(file, '');
  for (const out of [file, join(file, 'sub')]) {
    const r = await keygen(out);
    t.is(r.exitCode, 1, out);
    t.regex(String(r.stderr), new RegExp(`^fencectl keygen: --out ${out}: cannot create the folder: a file is in the way$`, 'm'));
  }
  t.deepEqual(readdirSync(base).sort(), ['a-file', 'clusters.yaml', 'host_ed25519', 'host_ed25519.pub', 'keys']);
});
