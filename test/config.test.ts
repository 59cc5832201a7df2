// clusters.yaml validation: the repo's example is valid, and each kind of
// malformed file gives a located error (FILE:LINE:COL) and a non-zero exit from
// the real `fencectl check`.
import test from 'ava';
import { DEFAULT_LIMITS, parseConfig } from '../broker/config/load.js';
import { ConfigError } from '../broker/config/errors.js';
import { policyData } from '../broker/policy/data.js';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fenceBroker, fencectl, newPublicKey, tempDir, writeTemp } from './helpers.js';

const k = Array.from({ length: 6 }, (_, i) => newPublicKey(`k${i}`));

/** An RSA public key line of `bits`, made by the real ssh-keygen. */
async function rsaKey(bits: number): Promise<string> {
  const file = join(tempDir('fb-rsa-'), 'k');
  await execa('ssh-keygen', ['-q', '-t', 'rsa', '-b', String(bits), '-N', '', '-C', `rsa${bits}`, '-f', file], { stdin: 'ignore' });
  return readFileSync(`${file}.pub`, 'utf8').trim();
}
const rsa2048 = await rsaKey(2048);
const rsa3072 = await rsaKey(3072);

// Line numbers below refer to this text (line 1 = "broker:"; the default
// toolstack takes lines 5-6).
const base = (over: Partial<Record<string, string>> = {}): string =>
  [
    'broker:',
    `  listen: ${over.listen ?? '127.0.0.1:2222'}`,
    '  host_key: keys/host',
    '  toolstack:',
    over.toolstack ?? '    type: sim\n    state: sim.json',
    '  audit_log: audit.jsonl',
    'clusters:',
    `  ${over.blueName ?? 'blue'}:`,
    `    domains: [${over.blueDomains ?? 'blue-1, blue-2'}]`,
    '    nodes:',
    `      blue-1: { key: "${over.blue1Key ?? k[0]}" }`,
    `      blue-2: { key: "${over.blue2Key ?? k[1]}"${over.blue2Extra ?? ''} }`,
    over.blueMore ?? '    actions: [status, off]',
    '  red:',
    `    domains: [${over.redDomains ?? 'red-1'}]`,
    '    nodes:',
    `      red-a: { key: "${k[2]}", domain: ${over.redADomain ?? 'red-1'} }`,
    'admins:',
    `  ops: { key: "${over.opsKey ?? k[3]}" }`,
    over.tail ?? '',
  ].join('\n');

test('the example config and a generated one are valid; paths resolve beside the file', async (t) => {
  const repo = await fencectl(['check', '--config', 'clusters.yaml']);
  t.is(repo.exitCode, 0, repo.stderr);
  t.regex(repo.stdout, /ok: 2 clusters, 5 domains, 5 nodes, 1 admins; policy rego-[0-9a-f]{16}/);

  const c = parseConfig(base(), '/etc/fence-broker/clusters.yaml');
  t.is(c.broker.hostKey, '/etc/fence-broker/keys/host');
  t.deepEqual(c.broker.toolstack, { type: 'sim', state: '/etc/fence-broker/sim.json' });
  t.deepEqual(c.broker.listen, { host: '127.0.0.1', port: 2222 });
  t.deepEqual(c.broker.timeouts, { commandMs: 10_000, verifyMs: 30_000, fenceRaceMs: 60_000, requestMs: 40_000 }, 'default bounds');
  t.deepEqual(c.broker.limits, DEFAULT_LIMITS, 'default limits');
  const timed = parseConfig(base({ listen: '127.0.0.1:2222\n  timeouts: { command: 2.5, verify: 60 }' }), 'c.yaml');
  t.deepEqual(timed.broker.timeouts, { commandMs: 2_500, verifyMs: 60_000, fenceRaceMs: 60_000, requestMs: 40_000 });
  const limited = parseConfig(base({ listen: '127.0.0.1:0\n  timeouts: { request: 20 }\n  limits: { max_connections: 10, max_sessions: 3, handshake_timeout: 2.5 }' }), 'c.yaml');
  t.is(limited.broker.listen.port, 0, 'port 0: the kernel picks one (printed in the ready line)');
  t.is(limited.broker.timeouts.requestMs, 20_000);
  t.like(limited.broker.limits, { maxConnections: 10, maxUnauthenticated: 5, maxSessions: 3, handshakeTimeoutMs: 2_500, maxPerIdentity: 8 }, 'unset max_unauthenticated stays below half of max_connections');
  t.deepEqual(c.clusters.red?.actions, ['status', 'on', 'off', 'reset'], 'actions default to all');
  t.is(c.clusters.red?.nodes['red-a']?.domain, 'red-1');
  t.regex(c.clusters.blue?.nodes['blue-1']?.key.fingerprint ?? '', /^SHA256:[A-Za-z0-9+/]{43}$/);
  // The policy index is keyed by domain and by node.
  const data = policyData(c);
  t.deepEqual(data.domains['red-1'], { cluster: 'red' });
  t.deepEqual(data.clusters.blue?.actions, { status: true, off: true });
  t.deepEqual(Object.keys(data.admins), ['ops']);
});

interface Bad {
  kind: string;
  text: string;
  line: number;
  col: number;
  message: RegExp;
}

const bad: Bad[] = [
  { kind: 'YAML syntax (unclosed flow sequence)', text: base({ blueDomains: 'blue-1, blue-2' }).replace('[blue-1, blue-2]', '[blue-1, blue-2'), line: 11, col: 5, message: /YAML: Flow sequence .* end with a \]/ },
  { kind: 'duplicate key', text: base({ tail: 'clusters: {}' }), line: 21, col: 1, message: /YAML: Map keys must be unique/ },
  { kind: 'unknown top-level key', text: base({ tail: 'tenants: {}' }), line: 21, col: 1, message: /unknown key "tenants" in top level/ },
  { kind: 'unknown key in a node', text: base({ blue2Extra: ', role: dc' }), line: 13, col: 109, message: /unknown key "role" in clusters\.blue\.nodes\.blue-2/ },
  { kind: 'missing required key', text: base().replace('  audit_log: audit.jsonl\n', ''), line: 2, col: 3, message: /broker is missing required key "audit_log"/ },
  { kind: 'domain owned by two clusters', text: base({ redDomains: 'red-1, blue-2' }), line: 16, col: 22, message: /domain blue-2 is owned by cluster blue already/ },
  { kind: 'key used twice', text: base({ opsKey: k[0] }), line: 20, col: 15, message: /key SHA256:\S+ is already used by node blue\/blue-1/ },
  { kind: 'malformed key (bad blob)', text: base({ blue2Key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBROKEN blue-2' }), line: 13, col: 22, message: /clusters\.blue\.nodes\.blue-2\.key: malformed public key/ },
  { kind: 'not a key at all', text: base({ blue1Key: 'hunter2' }), line: 12, col: 22, message: /not an OpenSSH public key line/ },
  { kind: 'domain name off the pattern', text: base({ blueDomains: 'blue-1, "blue;id"' }), line: 10, col: 23, message: /"blue;id" must match/ },
  { kind: 'cluster name off the pattern', text: base({ blueName: '-blue' }), line: 9, col: 3, message: /name "-blue" in clusters must match/ },
  { kind: 'unknown toolstack type', text: base({ toolstack: '    type: vmware' }), line: 5, col: 11, message: /toolstack\.type: must be one of sim, xl, virsh/ },
  { kind: 'virsh without uri', text: base({ toolstack: '    type: virsh' }), line: 5, col: 5, message: /toolstack is missing required key "uri"/ },
  { kind: 'sim with an xl option', text: base({ toolstack: '    type: sim\n    state: s.json\n    uri: qemu:///system' }), line: 7, col: 5, message: /unknown key "uri" in broker\.toolstack/ },
  { kind: 'listen port out of range', text: base({ listen: '127.0.0.1:70000' }), line: 2, col: 11, message: /port 70000 is not in 0\.\.65535/ },
  { kind: 'unauthenticated slots as many as all slots', text: base({ listen: '127.0.0.1:2222\n  limits: { max_connections: 10, max_unauthenticated: 10 }' }), line: 3, col: 55, message: /max_unauthenticated \(10\) must be below max_connections \(10\)/ },
  { kind: 'unknown limit', text: base({ listen: '127.0.0.1:2222\n  limits: { max_sesions: 3 }' }), line: 3, col: 13, message: /unknown key "max_sesions" in broker\.limits/ },
  { kind: 'listen without port', text: base({ listen: 'localhost' }), line: 2, col: 11, message: /expected host:port/ },
  { kind: "node's domain not owned by its cluster", text: base({ redADomain: 'red-9' }), line: 18, col: 116, message: /its domain red-9 is not among cluster red's domains/ },
  { kind: 'unknown action', text: base({ blueMore: '    actions: [status, destroy]' }), line: 14, col: 23, message: /actions\.1: must be one of status, on, off, reset/ },
  { kind: 'same domain twice in one cluster', text: base({ blueDomains: 'blue-1, blue-2, blue-1' }), line: 10, col: 31, message: /duplicate entry/ },
  { kind: 'domain named Domain-0', text: base({ redDomains: 'red-1, Domain-0' }), line: 16, col: 22, message: /domain Domain-0: Domain-0 is Xen's control domain/ },
  { kind: 'UUID-shaped domain name', text: base({ redDomains: 'red-1, 4b1c2a3e-9f0d-4c1b-8a2e-1f2e3d4c5b6a' }), line: 16, col: 22, message: /UUID-shaped \(32 hex digits and dashes\): virsh resolves a UUID before a name/ },
  // libvirt's parser skips a dash between any two hex pairs: this one resolved to another domain by UUID.
  { kind: 'UUID with dashes out of place', text: base({ redDomains: 'red-1, 66-08-1d-44-8fad401b89610aca60a55c87' }), line: 16, col: 22, message: /UUID-shaped/ },
  { kind: 'RSA key shorter than 3072 bits', text: base({ opsKey: rsa2048 }), line: 20, col: 15, message: /an RSA key of 2048 bits; at least 3072 are required/ },
  { kind: 'domain named by a bare number', text: base({ redDomains: 'red-1, "42"' }), line: 16, col: 22, message: /domain 42: a bare number is a domain id/ },
  { kind: 'xl config path not absolute', text: base({ toolstack: '    type: xl\n    domain_configs: { blue-1: blue-1.cfg }' }), line: 6, col: 31, message: /domain_configs\.blue-1: "blue-1\.cfg" must match \^\// },
  { kind: 'wrong type', text: base({ blueMore: '    allow_self_off: "yes"' }), line: 14, col: 21, message: /allow_self_off: must be boolean/ },
  // The metrics listener: never an address a guest could reach.
  { kind: 'metrics on every address', text: base({ listen: '127.0.0.1:2222\n  metrics: { listen: "0.0.0.0:9464" }' }), line: 3, col: 22, message: /broker\.metrics\.listen: 0\.0\.0\.0 is not a loopback address: the metrics must never be reachable from guests/ },
  { kind: 'metrics on a non-loopback IPv6 address', text: base({ listen: '127.0.0.1:2222\n  metrics: { listen: "[fe80::1]:9464" }' }), line: 3, col: 22, message: /fe80::1 is not a loopback address/ },
  { kind: 'metrics on a host name', text: base({ listen: '127.0.0.1:2222\n  metrics: { listen: "localhost:9464" }' }), line: 3, col: 22, message: /localhost is not an address literal: a name could resolve to an address guests reach/ },
  { kind: 'metrics on a relative socket path', text: base({ listen: '127.0.0.1:2222\n  metrics: { listen: metrics.sock }' }), line: 3, col: 22, message: /metrics\.listen: expected 127\.0\.0\.1:PORT, \[::1\]:PORT or an absolute UNIX socket path/ },
  { kind: 'metrics socket path too long', text: base({ listen: `127.0.0.1:2222\n  metrics: { listen: /run/${'s'.repeat(110)} }` }), line: 3, col: 22, message: /socket path of 115 bytes; a UNIX socket path has at most 107/ },
  { kind: 'a multicast group that is no multicast address', text: base({ listen: '127.0.0.1:2222\n  fence_virt: { key_dir: k, multicast: { groups: [225.0.0.12, 10.0.0.1] } }' }), line: 3, col: 63, message: /broker\.fence_virt\.multicast\.groups\[1\]: 10\.0\.0\.1 is not a multicast address \(224\.0\.0\.0\/4\)/ },
  { kind: 'an IPv6 multicast group that is link-local unicast', text: base({ listen: '127.0.0.1:2222\n  fence_virt: { key_dir: k, multicast: { groups: ["ff05::3:1", "fe80::1"] } }' }), line: 3, col: 64, message: /groups\[1\]: fe80::1 is not a multicast address \(ff00::\/8\)/ },
  { kind: 'unknown metrics key', text: base({ listen: '127.0.0.1:2222\n  metrics: { listen: 127.0.0.1:9464, path: /metrics }' }), line: 3, col: 38, message: /unknown key "path" in broker\.metrics/ },
  {
    kind: 'fence_race shorter than a fence can last, with etcd (a 1 s lease for a 600 s request)',
    text: base({ listen: '127.0.0.1:2222\n  timeouts: { fence_race: 0, request: 600 }\n  coordination: { type: etcd, endpoints: ["http://127.0.0.1:2379"] }' }),
    line: 3, col: 27, message: /broker\.timeouts\.fence_race \(0 s\) must be at least timeouts\.request \(600 s\) \+ twice coordination\.timeout \(2 s\) \+ 5 s = 609 s/,
  },
  {
    kind: 'the default fence_race under a long request deadline, with etcd: located at the request',
    text: base({ listen: '127.0.0.1:2222\n  timeouts: { request: 120 }\n  coordination: { type: etcd, endpoints: ["http://127.0.0.1:2379"], timeout: 3 }' }),
    line: 3, col: 24, message: /fence_race \(60 s\) must be at least timeouts\.request \(120 s\) \+ twice coordination\.timeout \(3 s\) \+ 5 s = 131 s/,
  },
];

for (const b of bad) {
  test(`malformed: ${b.kind} → located error, non-zero exit`, async (t) => {
    const file = writeTemp('clusters.yaml', b.text);
    const r = await fencectl(['check', '--config', file]);
    t.is(r.exitCode, 1, r.stdout);
    t.is(r.stdout, '', 'nothing reported as ok');
    const first = r.stderr.split('\n').find((l) => b.message.test(l));
    t.truthy(first, `expected ${b.message} in:\n${r.stderr}`);
    t.is(first?.slice(0, file.length + 1 + `${b.line}:${b.col}:`.length), `${file}:${b.line}:${b.col}:`, r.stderr);
  });
}

test('metrics: off when absent; loopback addresses and absolute socket paths accepted', (t) => {
  t.is(parseConfig(base(), 'c.yaml').broker.metrics, undefined);
  const listen = (v: string) => parseConfig(base({ listen: `127.0.0.1:2222\n  metrics: { listen: "${v}" }` }), 'c.yaml').broker.metrics?.listen;
  t.deepEqual(listen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  t.deepEqual(listen('127.0.0.53:0'), { host: '127.0.0.53', port: 0 }, 'all of 127/8 is loopback');
  t.deepEqual(listen('[::1]:9464'), { host: '::1', port: 9464 });
  t.deepEqual(listen('/run/fence-broker/metrics.sock'), { path: '/run/fence-broker/metrics.sock' });
});

test('with etcd, fence_race at its floor is accepted; local coordination has no floor (its marks live while the fence runs)', (t) => {
  const etcd = '\n  coordination: { type: etcd, endpoints: ["http://127.0.0.1:2379"] }';
  t.is(parseConfig(base({ listen: `127.0.0.1:2222\n  timeouts: { fence_race: 49 }${etcd}` }), 'c.yaml').broker.timeouts.fenceRaceMs, 49_000);
  t.is(parseConfig(base({ listen: '127.0.0.1:2222\n  timeouts: { fence_race: 0, request: 600 }' }), 'c.yaml').broker.timeouts.fenceRaceMs, 0);
});

test('fence_virt multicast: off when absent; {} takes fence_xvm\'s defaults', (t) => {
  const fv = (m: string) => parseConfig(base({ listen: `127.0.0.1:2222\n  fence_virt: { key_dir: k${m} }` }), 'c.yaml').broker.fenceVirt?.multicast;
  t.is(fv(''), undefined);
  t.deepEqual(fv(', multicast: {}'), { groups: ['225.0.0.12', 'ff05::3:1'], port: 1229, interface: undefined, maxCallbacks: 32, connectTimeoutMs: 5_000 });
  t.deepEqual(fv(', multicast: { groups: [239.1.2.3], port: 0, interface: br0, max_callbacks: 2, connect_timeout: 0.5 }'), { groups: ['239.1.2.3'], port: 0, interface: 'br0', maxCallbacks: 2, connectTimeoutMs: 500 });
});

test('an RSA key of 3072 bits is accepted', (t) => {
  t.notThrows(() => parseConfig(base({ opsKey: rsa3072 }), 'c.yaml'));
});

test('every problem in a file is reported, not only the first', (t) => {
  const text = base({ opsKey: k[0], redDomains: 'red-1, blue-1' });
  const e = t.throws(() => parseConfig(text, 'c.yaml'), { instanceOf: ConfigError });
  t.is(e?.problems.length, 2);
});

test('the broker refuses to start on a bad config, and fencectl explain exits 2', async (t) => {
  const file = writeTemp('clusters.yaml', base({ tail: 'tenants: {}' }));
  const b = await fenceBroker(['--config', file]);
  t.is(b.exitCode, 2);
  t.regex(b.stderr, /refusing to start/);
  const e = await fencectl(['explain', '--config', file, '--as', 'blue/blue-1', '--action', 'off', '--target', 'blue-2']);
  t.is(e.exitCode, 2);
  t.regex(e.stderr, /unknown key "tenants"/);
});
