// broker.fence_virt in clusters.yaml: off when absent, its defaults, and each
// kind of mistake located (FILE:LINE:COL); the keys it names, checked like the
// host key (keys.ts), with every problem named.
import test from 'ava';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../../../broker/config/errors.js';
import { parseConfig } from '../../../../broker/config/load.js';
import { KeyProblem, loadKeyRing, writeNodeKey } from '../../../../broker/doors/fence-virt/keys.js';
import { newPublicKey, tempDir } from '../../../helpers.js';

const k = [newPublicKey('a'), newPublicKey('b')];
const yaml = (fenceVirt: string[]): string =>
  [
    'broker:',
    '  listen: 127.0.0.1:2222',
    '  host_key: host',
    '  toolstack: { type: sim, state: sim.json }',
    '  audit_log: audit.jsonl',
    ...fenceVirt,
    'clusters:',
    '  blue:',
    '    domains: [blue-1, blue-2]',
    '    nodes:',
    `      blue-1: { key: "${k[0]}" }`,
    `      blue-2: { key: "${k[1]}" }`,
  ].join('\n') + '\n';

const problems = (text: string): string[] => {
  try {
    parseConfig(text, 'clusters.yaml', '/etc/fence-broker/clusters.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.message.split('\n');
    throw e;
  }
  return [];
};

test('off when absent; defaults when present', (t) => {
  t.is(parseConfig(yaml([]), 'clusters.yaml', '/etc/fence-broker/clusters.yaml').broker.fenceVirt, undefined);
  const c = parseConfig(yaml(['  fence_virt:', '    listen: ["10.0.0.1:1229", "[fd00::1]:1229"]', '    key_dir: fv']), 'clusters.yaml', '/etc/fence-broker/clusters.yaml');
  t.deepEqual(c.broker.fenceVirt, {
    listen: [{ host: '10.0.0.1', port: 1229 }, { host: 'fd00::1', port: 1229 }],
    keyDir: '/etc/fence-broker/fv', hash: 'sha256', challengeHash: 'sha256', readTimeoutMs: 5000,
    maxConnections: 128, maxConnectionsPerSource: 8, unverifiedPerSource: 20, unverifiedTotal: 500, multicast: undefined, channels: undefined,
  });
});

test('mistakes are located', (t) => {
  t.regex(problems(yaml(['  fence_virt:', '    listen: ["10.0.0.1:1229"]']))[0] ?? '', /^clusters\.yaml:6:3: broker\.fence_virt: key_dir is required with listen \(those clients prove a node's key\); only a door with channels alone needs no keys/);
  t.regex(problems(yaml(['  fence_virt:', '    multicast: {}']))[0] ?? '', /^clusters\.yaml:6:3: broker\.fence_virt: key_dir is required with multicast/);
  t.regex(problems(yaml(['  fence_virt:', '    key_dir: fv', '    hash: sha1'])).join('\n'), /^clusters\.yaml:8:11: .*hash: must be one of sha256, sha512/m);
  t.regex(problems(yaml(['  fence_virt:', '    key_dir: fv', '    listen: ["host.example:1229"]'])).join('\n'), /^clusters\.yaml:8:\d+: .*listen/m);
  t.regex(problems(yaml(['  fence_virt:', '    key_dir: fv', '    listen: ["10.0.0.1:99999"]'])).join('\n'), /^clusters\.yaml:8:\d+: broker\.fence_virt\.listen\[0\]: port 99999 is not in 0\.\.65535/m);
  t.regex(problems(yaml(['  fence_virt:', '    key_dir: fv', '    port: 1229'])).join('\n'), /^clusters\.yaml:8:5: .*port/m);
});

// The serial channel door: channels need libvirt's XML (the virsh toolstack), and no keys.
const virshYaml = (fenceVirt: string[]): string => yaml(fenceVirt).replace('toolstack: { type: sim, state: sim.json }', 'toolstack: { type: virsh, uri: "qemu:///system" }');

test('channels: defaults, no key_dir needed, dir normalised', (t) => {
  const c = parseConfig(virshYaml(['  fence_virt:', '    channels: { dir: /run/fence-broker/channels/ }']), 'clusters.yaml', '/etc/fence-broker/clusters.yaml');
  t.is(c.broker.fenceVirt?.keyDir, undefined);
  t.deepEqual(c.broker.fenceVirt?.listen, []);
  t.deepEqual(c.broker.fenceVirt?.channels, { dir: '/run/fence-broker/channels', mode: 'serial', rescanMs: 5_000, requestsPerSecond: 2, burst: 5 });
  const v = parseConfig(virshYaml(['  fence_virt:', '    channels: { dir: /srv/ch, mode: vmchannel, rescan: 1, requests_per_second: 0.5 }']), 'clusters.yaml', '/etc/fence-broker/clusters.yaml');
  t.deepEqual(v.broker.fenceVirt?.channels, { dir: '/srv/ch', mode: 'vmchannel', rescanMs: 1_000, requestsPerSecond: 0.5, burst: 5 });
});

test('channels: mistakes are located', (t) => {
  // Any toolstack but virsh: no domain XML to find the channels in.
  t.regex(problems(yaml(['  fence_virt:', '    channels: { dir: /run/ch }'])).join('\n'), /^clusters\.yaml:7:5: broker\.fence_virt\.channels: the channels are found in libvirt's domain XML, so they need toolstack type virsh .*toolstack sim has no domain XML/m);
  const xl = yaml(['  fence_virt:', '    channels: { dir: /run/ch }']).replace('toolstack: { type: sim, state: sim.json }', 'toolstack: { type: xl }');
  t.regex(problems(xl).join('\n'), /^clusters\.yaml:7:5: .*toolstack xl has no domain XML/m);
  t.regex(problems(virshYaml(['  fence_virt:', '    channels: { dir: run/ch }'])).join('\n'), /^clusters\.yaml:7:\d+: .*dir.*pattern|^clusters\.yaml:7:\d+: .*dir.*\^\//m);
  t.regex(problems(virshYaml(['  fence_virt:', '    channels: { dir: /run/ch, mode: pty }'])).join('\n'), /^clusters\.yaml:7:\d+: .*mode: must be one of serial, vmchannel/m);
  t.regex(problems(virshYaml(['  fence_virt:', '    channels: { dir: /run/ch, rescan: 0 }'])).join('\n'), /^clusters\.yaml:7:\d+: .*rescan/m);
  t.regex(problems(virshYaml(['  fence_virt:', '    channels: { mode: serial }'])).join('\n'), /^clusters\.yaml:7:\d+: .*channels is missing required key "dir"/m);
  t.regex(problems(virshYaml(['  fence_virt:', '    channels: { dir: /run/ch, listen: x }'])).join('\n'), /^clusters\.yaml:7:\d+: .*listen/m);
});

test('keys: each node its own file; unsafe files, wrong sizes and a shared key are each named', (t) => {
  const dir = join(tempDir('fb-fvkeys-'), 'keys');
  const config = parseConfig(yaml([]), 'clusters.yaml', '/etc/fence-broker/clusters.yaml');
  t.throws(() => loadKeyRing(config, dir), { instanceOf: KeyProblem, message: /key directory .* does not exist/ });
  const a = writeNodeKey(dir, 'blue', 'blue-1', false);
  t.throws(() => writeNodeKey(dir, 'blue', 'blue-1', false), { message: /exists; pass --force/ });
  const ring = loadKeyRing(config, dir);
  t.deepEqual(ring.map((e) => [e.identity.node, e.identity.fingerprint]), [['blue-1', a.fingerprint]]);
  t.regex(a.fingerprint, /^fence_virt:SHA256:[A-Za-z0-9+/]{43}$/);
  // blue-2 shares blue-1's key, a third file is a symlink: both named, nothing loaded.
  writeFileSync(join(dir, 'blue', 'blue-2.key'), ring[0]?.prepared.key as Buffer, { mode: 0o600 });
  t.throws(() => loadKeyRing(config, dir), { instanceOf: KeyProblem, message: /blue-2\.key is the same key as .*blue-1\.key; each node needs its own key/ });
  writeFileSync(join(dir, 'blue', 'blue-2.key'), Buffer.alloc(8, 1), { mode: 0o600 });
  t.throws(() => loadKeyRing(config, dir), { message: /blue-2\.key has 8 bytes; expected 32 to 4096/ });
  symlinkSync(join(dir, 'blue', 'blue-1.key'), join(dir, 'blue', 'blue-2.key.tmp'));
  writeNodeKey(dir, 'blue', 'blue-2', true);
  chmodSync(join(dir, 'blue'), 0o755);
  t.throws(() => loadKeyRing(config, dir), { message: /key directory .*blue is accessible by group or others \(mode 755\); chmod 700 it/ });
  chmodSync(join(dir, 'blue'), 0o700);
  t.is(loadKeyRing(config, dir).length, 2);
  mkdirSync(join(dir, 'red'), { mode: 0o700 }); // a folder of no configured cluster is not read
  t.is(loadKeyRing(config, dir).length, 2);
  // A folder above that others may write: they could swap the whole key directory.
  const parent = join(dir, '..');
  chmodSync(parent, 0o777);
  t.throws(() => loadKeyRing(config, dir), { message: /folder .* above the key directory is writable by group or others \(mode 777\); chmod go-w it/ });
  chmodSync(parent, 0o700);
});
