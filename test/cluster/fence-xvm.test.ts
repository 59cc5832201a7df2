// The fence_virt door's multicast listener through Debian's real fence_xvm:
// guests are network namespaces on a test bridge (netns.ts), each node with
// its own key (the broker's KEY_DIR/CLUSTER/NODE.key, copied to the node as
// fence_xvm's key file); the broker is the real daemon in the host namespace,
// joined to the group on the bridge, driving real QEMU domains through
// libvirt. A second daemon (sim toolstack, another "host") hears the same
// group: only the broker whose host has the domain answers. Hostile cases:
// a wrong key, another tenant's domain, and a correctly signed packet whose
// callback address is not where it came from (sent by a hand-built client, the
// attacker, since fence_xvm never sends one).
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { createSocket } from 'node:dgram';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { writeNodeKey } from '../../broker/doors/fence-virt/keys.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { cleanup, tempDir, until } from '../helpers.js';
import { createDomain, domstate, libvirtMissing, removeDomain, sweepStale, URI } from '../libvirt-host.js';
import { labMissing, makeLab, type Lab } from './netns.js';

async function whyMissing(): Promise<string | undefined> {
  const lab = await labMissing();
  if (lab) return lab;
  const r = await execa('sh', ['-c', 'command -v fence_xvm'], { reject: false });
  if (r.exitCode !== 0) return 'fence_xvm is not installed (scripts/system-setup.sh installs fence-virt)';
  return libvirtMissing();
}
const missing = await whyMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs network namespaces, fence_xvm and libvirt: ${missing}`);
if (missing) console.error(`fence_xvm multicast tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

const GROUP = '225.0.0.12';
const GROUP6 = 'ff05::3:1';
const WIRE = projectPath('dist', 'broker', 'doors', 'fence-virt', 'wire.js');

let lab: Lab;
let d1: Daemon; // the host with the QEMU domains
let d2: Daemon; // another host: a sim with bsim only
let port: number;
let b1: string; // blue's, running on host 1
let r1: string; // red's, running on host 1
const bsim = 'bsim-1'; // blue's, on host 2 only
const bghost = 'bghost-1'; // blue's, on no host
const created: string[] = [];
const clientKey: Record<string, string> = {};
const ns: Record<string, string> = {};
const addr: Record<string, string> = {};

/** A UDP port free on the host now (the group's port; each guest listens for the callback on it in its own namespace). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, resolve));
  const p = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return p;
}

anyTest.before(async () => {
  if (missing) return;
  await sweepStale();
  lab = await makeLab(3);
  // The bridge floods multicast to every port: no IGMP snooping state to wait for.
  await execa('ip', ['link', 'set', lab.bridge, 'type', 'bridge', 'mcast_snooping', '0']);
  [b1, r1] = await Promise.all([createDomain('xvm-b1', true, (n) => created.push(n)), createDomain('xvm-r1', true, (n) => created.push(n))]);
  port = await freeUdpPort();
  const keyDir = join(tempDir('fb-xvm-keys-'), 'keys');
  const clientDir = tempDir('fb-xvm-client-');
  const nodes = [['blue', 'blue-n1'], ['blue', 'blue-n2'], ['red', 'red-n1']] as const;
  nodes.forEach(([cluster, node], i) => {
    const { file } = writeNodeKey(keyDir, cluster, node, false);
    clientKey[node] = join(clientDir, `${node}.key`);
    copyFileSync(file, clientKey[node]);
    ns[node] = lab.nodes[i]?.netns as string;
    addr[node] = lab.nodes[i]?.address as string;
  });
  const fenceVirt = ['  fence_virt:', `    key_dir: ${keyDir}`, `    multicast: { groups: [${GROUP}, "${GROUP6}"], port: ${port}, interface: ${lab.bridge} }`];
  const clusters = {
    blue: { domains: [b1, bsim, bghost], nodes: { 'blue-n1': b1, 'blue-n2': bghost } },
    red: { domains: [r1], nodes: { 'red-n1': r1 } },
  };
  d1 = await startDaemon({ toolstack: `{ type: virsh, uri: "${URI}" }`, clusters, extraBroker: fenceVirt });
  // Host 2 serves one callback at a time: the bound is tried on it.
  d2 = await startDaemon({ clusters, simDomains: { [bsim]: 'running' }, extraBroker: fenceVirt.map((l) => l.replace('interface:', 'max_callbacks: 1, interface:')) });
});

anyTest.after.always(async () => {
  if (missing) return;
  await cleanup(() => d1?.stop(), () => d2?.stop(), () => lab?.remove(), () => Promise.all(created.map(removeDomain)));
});

/** fence_xvm in `node`'s namespace with `keyFile` (default: the node's own key). */
async function xvm(node: string, args: string[], o: { timeoutS?: number; keyFile?: string; group?: string } = {}) {
  const argv = ['netns', 'exec', ns[node] as string, 'fence_xvm', '-a', o.group ?? GROUP, '-p', String(port), '-k', o.keyFile ?? (clientKey[node] as string), '-t', String(o.timeoutS ?? 30), ...args];
  const r = await execa('ip', argv, { reject: false, timeout: 120_000, stdin: 'ignore' });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** broker.fence_virt.key_dir of a daemon's config. */
const keyDirOf = (d: Daemon): string => /^ {4}key_dir: (.+)$/m.exec(readFileSync(d.config, 'utf8'))?.[1] ?? '';

const refusals = (d: Daemon, kind: string) => d.auditAll().filter((l) => l.event === 'refusal' && l.kind === kind);

test('each node with its own key: fence_xvm status, off and on of a real QEMU domain; every line names fence_virt/multicast', async (t) => {
  const st = await xvm('blue-n1', ['-o', 'status', '-H', b1]);
  t.is(st.exitCode, 0, st.stderr);
  t.regex(st.stdout, /Status: ON/);
  const off = await xvm('blue-n2', ['-o', 'off', '-H', b1]);
  t.is(off.exitCode, 0, off.stderr);
  t.is(await domstate(b1), 'shut off');
  const st2 = await xvm('blue-n1', ['-o', 'status', '-H', b1]);
  t.is(st2.exitCode, 2, `off is 2: ${st2.stderr}`);
  t.regex(st2.stdout, /Status: OFF/);
  const on = await xvm('blue-n2', ['-o', 'on', '-H', b1]);
  t.is(on.exitCode, 0, on.stderr);
  t.is(await domstate(b1), 'running');
  const lines = d1.audit().filter((l) => l.target === b1);
  t.deepEqual(lines.map((l) => [l.node, l.action, l.decision, l.door]), [
    ['blue-n1', 'status', 'allow', 'fence_virt/multicast'],
    ['blue-n2', 'off', 'allow', 'fence_virt/multicast'],
    ['blue-n1', 'status', 'allow', 'fence_virt/multicast'],
    ['blue-n2', 'on', 'allow', 'fence_virt/multicast'],
  ]);
  for (const l of lines) t.regex(String(l.peer), new RegExp(`^${addr[l.node as string]?.replace(/\./g, '\\.')}:`), 'the peer is the node\'s own address');
  // The other host heard every one and answered none.
  t.is(d2.audit().length, 0);
  t.true(refusals(d2, 'fence_virt_not_here').some((l) => l.domain === b1));
});

test('fence_xvm -o list: only the caller\'s cluster\'s domains, as the answering host has them', async (t) => {
  // A request without a domain is every broker's: the client takes the first connection back, the other's is cut.
  const hosts: [Daemon, Record<string, string[]>][] = [[d1, { red: [r1], blue: [b1] }], [d2, { red: [], blue: [bsim] }]];
  for (const [node, cluster] of [['red-n1', 'red'], ['blue-n1', 'blue']] as const) {
    const before = hosts.map(([d]) => d.audit().length);
    const r = await xvm(node, ['-o', 'list']);
    t.is(r.exitCode, 0, r.stderr);
    const listed = r.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]);
    const answered = hosts.filter(([d], i) => d.audit().slice(before[i]).some((l) => l.action === 'list' && l.node === node && l.door === 'fence_virt/multicast'));
    t.is(answered.length, 1, 'one broker served the list');
    t.deepEqual(listed, answered[0]?.[1][cluster], r.stdout);
  }
});

test('two brokers hear every request: only the one whose host has the domain answers; a domain no host has fails by the client\'s timeout, never off', async (t) => {
  const st = await xvm('blue-n1', ['-o', 'status', '-H', bsim]);
  t.is(st.exitCode, 0, st.stderr);
  t.like(d2.audit().find((l) => l.target === bsim), { node: 'blue-n1', action: 'status', door: 'fence_virt/multicast' });
  t.false(d1.audit().some((l) => l.target === bsim), 'host 1 does not have it and kept quiet');
  await until('host 1 audited that it does not have it', () => refusals(d1, 'fence_virt_not_here').some((l) => l.domain === bsim), 30_000);

  const started = Date.now();
  const ghost = await xvm('blue-n1', ['-o', 'off', '-H', bghost], { timeoutS: 6 });
  t.is(ghost.exitCode, 1, `${ghost.stdout}${ghost.stderr}`);
  t.regex(`${ghost.stdout}${ghost.stderr}`, /Timed out/);
  t.notRegex(ghost.stdout, /OFF/);
  t.true(Date.now() - started >= 5_000, 'it failed by its timeout');
  for (const d of [d1, d2]) {
    t.false(d.audit().some((l) => l.target === bghost), 'no broker acted on it');
    t.true(refusals(d, 'fence_virt_not_here').some((l) => l.domain === bghost && l.node === 'blue-n1'));
  }
});

test('over IPv6 (ff05::3:1): fence_xvm status and off; the callback goes to the sender\'s own address', async (t) => {
  // fence_xvm sends from every address but link-local ones: give the bridge and blue-n2 a ULA each (no DAD wait).
  const n = /\d+$/.exec(lab.bridge)?.[0] as string;
  const host6 = `fd00:213:${n}::1`;
  const node6 = `fd00:213:${n}::12`;
  await execa('ip', ['-6', 'addr', 'add', `${host6}/64`, 'dev', lab.bridge, 'nodad']);
  await execa('ip', ['-n', ns['blue-n2'] as string, '-6', 'addr', 'add', `${node6}/64`, 'dev', 'eth0', 'nodad']);
  const before = d1.audit().length;
  const st = await xvm('blue-n2', ['-o', 'status', '-H', b1], { group: GROUP6 });
  t.is(st.exitCode, 0, `${st.stdout}${st.stderr}`);
  const off = await xvm('blue-n2', ['-o', 'off', '-H', b1], { group: GROUP6 });
  t.is(off.exitCode, 0, `${off.stdout}${off.stderr}`);
  t.is(await domstate(b1), 'shut off');
  const lines = d1.audit().slice(before);
  t.deepEqual(lines.map((l) => [l.action, l.node, l.door, l.peer]), [['status', 'blue-n2', 'fence_virt/multicast', `[${node6}]:${lines[0]?.peer?.toString().split(']:')[1]}`], ['off', 'blue-n2', 'fence_virt/multicast', `[${node6}]:${lines[1]?.peer?.toString().split(']:')[1]}`]]);
  t.is((await xvm('blue-n2', ['-o', 'on', '-H', b1])).exitCode, 0);
  t.is(await domstate(b1), 'running');
});

test('a wrong key: no answer, the client times out, the request is audited as unverified, the domain keeps running', async (t) => {
  const wrong = join(tempDir('fb-xvm-wrong-'), 'wrong.key');
  writeFileSync(wrong, randomBytes(512), { mode: 0o600 });
  const r = await xvm('blue-n1', ['-o', 'off', '-H', b1], { keyFile: wrong, timeoutS: 4 });
  t.is(r.exitCode, 1, r.stderr);
  t.is(await domstate(b1), 'running');
  await until('the unverified request audited', () => refusals(d1, 'fence_virt_unverified').some((l) => l.domain === b1 && String(l.peer).startsWith(`${addr['blue-n1']}:`)), 30_000);
  t.false(d1.audit().some((l) => l.target === b1 && l.action === 'off' && l.node !== 'blue-n2'));
});

test('another tenant\'s domain gets what a domain no host has gets: no answer, the client\'s timeout; audited, the domain keeps running', async (t) => {
  const foreign = await xvm('red-n1', ['-o', 'off', '-H', b1], { timeoutS: 4 });
  const none = await xvm('red-n1', ['-o', 'off', '-H', 'no-such-domain'], { timeoutS: 4 });
  t.is(foreign.exitCode, 1, foreign.stdout);
  t.deepEqual([foreign.exitCode, foreign.stdout, foreign.stderr], [none.exitCode, none.stdout, none.stderr], 'the same reply');
  t.regex(`${foreign.stdout}${foreign.stderr}`, /Timed out/);
  t.is(await domstate(b1), 'running');
  t.false(d1.audit().some((l) => l.target === b1 && l.cluster === 'red'), 'nothing reached the broker for red');
  for (const domain of [b1, 'no-such-domain']) {
    t.true(refusals(d1, 'fence_virt_not_visible').some((l) => l.domain === domain && l.cluster === 'red' && l.door === 'fence_virt/multicast'), domain);
  }
});

test('a correctly signed request whose callback address is not its source: refused, audited, nobody called, nothing done', async (t) => {
  const subnet = (addr['blue-n1'] as string).split('.').slice(0, 3).map(Number);
  const elsewhere = [...subnet, 99];
  const seqno = 424242;
  // The attacker's client: a real request of blue-n1 (its key), naming another address for the callback.
  const script = `
    import { encodeRequest, OP, HASH, FAMILY } from ${JSON.stringify(WIRE)};
    import { readFileSync } from 'node:fs';
    import { createSocket } from 'node:dgram';
    import { randomBytes } from 'node:crypto';
    const packet = encodeRequest({ op: OP.off, hashtype: HASH.sha256, flags: 0, domain: ${JSON.stringify(b1)},
      address: Buffer.from(${JSON.stringify(elsewhere)}), port: ${port}, family: FAMILY.ipv4, seqno: ${seqno}, random: randomBytes(6) },
      readFileSync(${JSON.stringify(clientKey['blue-n1'])}));
    const s = createSocket('udp4');
    s.bind(0, ${JSON.stringify(addr['blue-n1'])}, () => {
      s.setMulticastInterface(${JSON.stringify(addr['blue-n1'])});
      s.send(packet, ${port}, ${JSON.stringify(GROUP)}, (err) => { if (err) throw err; s.close(); });
    });`;
  const sent = await execa('ip', ['netns', 'exec', ns['blue-n1'] as string, process.execPath, '--input-type=module', '-e', script], { reject: false, timeout: 60_000 });
  t.is(sent.exitCode, 0, String(sent.stderr));
  await until('the differing callback address audited', () => refusals(d1, 'fence_virt_callback_address').some((l) => l.seqno === seqno), 30_000);
  const line = refusals(d1, 'fence_virt_callback_address').find((l) => l.seqno === seqno);
  t.like(line, { cluster: 'blue', node: 'blue-n1', door: 'fence_virt/multicast', domain: b1 });
  t.regex(String(line?.why), new RegExp(`${elsewhere.join('\\.')}.*${(addr['blue-n1'] as string).replace(/\./g, '\\.')}`));
  t.false(d1.audit().some((l) => l.target === b1 && l.action === 'off' && l.node === 'blue-n1'), 'no request reached the broker');
  t.is(await domstate(b1), 'running');
});

test('a key revoked by a reload: the node\'s next request is unverified, the other node\'s key still works', async (t) => {
  const reloaded = await d1.reload((yaml) => {
    rmSync(join(keyDirOf(d1), 'blue', 'blue-n2.key'));
    return yaml;
  });
  t.is(reloaded.msg, 'reloaded');
  const r = await xvm('blue-n2', ['-o', 'status', '-H', b1], { timeoutS: 4 });
  // Host 2 still has the key but not the domain: nobody answers.
  t.is(r.exitCode, 1, r.stdout);
  await until('the revoked key\'s request audited as unverified', () => refusals(d1, 'fence_virt_unverified').some((l) => String(l.peer).startsWith(`${addr['blue-n2']}:`)), 30_000);
  const ok = await xvm('blue-n1', ['-o', 'status', '-H', b1]);
  t.is(ok.exitCode, 0, ok.stderr);
});

test('callbacks are bounded: with one in progress (its client silent), the next request is refused at once and audited, nothing done', async (t) => {
  const [first, second] = [515151, 525252];
  const before = d2.audit().length;
  // The attacker's client holds host 2's only callback slot: it accepts the callback and never answers the challenge.
  const script = `
    import { encodeRequest, OP, HASH, FAMILY } from ${JSON.stringify(WIRE)};
    import { readFileSync } from 'node:fs';
    import { createSocket } from 'node:dgram';
    import { createServer } from 'node:net';
    import { randomBytes } from 'node:crypto';
    const me = ${JSON.stringify(addr['blue-n1'])};
    const key = readFileSync(${JSON.stringify(clientKey['blue-n1'])});
    const held = [];
    const srv = createServer((c) => { held.push(c); if (held.length === 1) send(${second}); });
    const u = createSocket('udp4');
    const send = (seqno) => {
      const packet = encodeRequest({ op: OP.status, hashtype: HASH.sha256, flags: 0, domain: ${JSON.stringify(bsim)},
        address: Buffer.from(me.split('.').map(Number)), port: srv.address().port, family: FAMILY.ipv4, seqno, random: randomBytes(6) }, key);
      u.send(packet, ${port}, ${JSON.stringify(GROUP)});
    };
    u.bind(0, me, () => { u.setMulticastInterface(me); srv.listen(0, me, () => send(${first})); });
    setTimeout(() => { for (const c of held) c.destroy(); srv.close(); u.close(); }, 3000);`;
  const sent = await execa('ip', ['netns', 'exec', ns['blue-n1'] as string, process.execPath, '--input-type=module', '-e', script], { reject: false, timeout: 60_000 });
  t.is(sent.exitCode, 0, String(sent.stderr));
  await until('the second request refused as busy', () => refusals(d2, 'fence_virt_busy').some((l) => l.seqno === second), 30_000);
  t.like(refusals(d2, 'fence_virt_busy').find((l) => l.seqno === second), { cluster: 'blue', node: 'blue-n1', door: 'fence_virt/multicast', domain: bsim });
  // The held one ends when its client goes: a failed challenge, audited; neither reached the broker.
  await until('the held callback audited', () => refusals(d2, 'fence_virt_challenge_failed').some((l) => l.seqno === first), 30_000);
  t.deepEqual(d2.audit().slice(before), [], 'no request reached the broker');
  t.is(d2.sim()[bsim], 'running');
});
