// Two real Pacemaker + corosync nodes fencing through the stock fence_xvm
// (issue 19): as test/cluster/pacemaker-pair.test.ts, but the devices are
// `stonith:fence_xvm` exactly as `fencectl pacemaker --agent fence_xvm`
// prints them, each node with its own fence_virt key at the same path, the
// broker's multicast listener joined on the test bridge. When one node's stack
// dies, the survivor fences it through fence_xvm on Pacemaker's own initiative.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNodeKey } from '../../broker/doors/fence-virt/keys.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { cleanup, fencectl, tempDir, until } from '../helpers.js';
import { createDomain, domid, domstate, libvirtMissing, removeDomain, sweepStale } from '../libvirt-host.js';
import { labMissing, makeLab, type Lab } from './netns.js';
import { corosyncConf, IDENTITY_PATH, pacemakerMissing, startPacemakerNode, type PacemakerNode } from './pacemaker-host.js';

async function fenceXvmMissing(): Promise<string | undefined> {
  const r = await execa('sh', ['-c', 'command -v fence_xvm'], { reject: false });
  return r.exitCode === 0 ? undefined : 'fence_xvm is not installed (scripts/system-setup.sh installs fence-virt)';
}
const missing = (await pacemakerMissing()) ?? (await labMissing()) ?? (await fenceXvmMissing()) ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs Pacemaker, corosync, network namespaces, fence_xvm and libvirt: ${missing}`);
if (missing) console.error(`two-node pacemaker fence_xvm tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let d: Daemon | undefined;
let lab: Lab | undefined;
const nodes: PacemakerNode[] = [];
const created: string[] = [];

anyTest.after.always(async () => {
  if (missing) return;
  await cleanup(...nodes.map((n) => () => n.stop()), () => d?.stop(), () => lab?.remove(), () => Promise.all(created.map(removeDomain)));
});

/** A UDP port free on the host now: the group's port (each node listens for the callback on it in its own namespace). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, resolve));
  const p = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return p;
}

test('two nodes with stonith:fence_xvm as fencectl prints it: one node\'s stack dies, and the survivor fences it through the broker on Pacemaker\'s own initiative', async (t) => {
  await sweepStale();
  lab = await makeLab(2);
  await execa('ip', ['link', 'set', lab.bridge, 'type', 'bridge', 'mcast_snooping', '0']);
  const a = await createDomain('xpa', true, (n) => created.push(n));
  const b = await createDomain('xpb', true, (n) => created.push(n));
  const keyDir = join(tempDir('fb-xvm-pair-'), 'keys');
  const keys = { [a]: writeNodeKey(keyDir, 'duo', a, false).file, [b]: writeNodeKey(keyDir, 'duo', b, false).file };
  const port = await freeUdpPort();
  d = await startDaemon({
    clusters: { duo: { domains: [a, b], nodes: { [a]: a, [b]: b } } },
    toolstack: '{ type: virsh, uri: "qemu:///system" }',
    extraBroker: ['  fence_virt:', `    key_dir: ${keyDir}`, `    multicast: { groups: [225.0.0.12], port: ${port}, interface: ${lab.bridge} }`],
  });
  const conf = corosyncConf({ [a]: lab.nodes[0]?.address as string, [b]: lab.nodes[1]?.address as string });
  // Each node gets its own fence_virt key at the same path (IDENTITY_PATH).
  const started = await Promise.allSettled([
    startPacemakerNode(a, { corosyncConf: conf, netns: lab.nodes[0]?.netns as string, identity: keys[a] }),
    startPacemakerNode(b, { corosyncConf: conf, netns: lab.nodes[1]?.netns as string, identity: keys[b] }),
  ]);
  for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  const [nodeA, nodeB] = nodes as [PacemakerNode, PacemakerNode];
  await nodeA.waitFor('both nodes online', (x) => [a, b].every((n) => new RegExp(`<node name="${n}"[^>]* online="true"`).test(x)));

  // What fencectl prints, loaded as it is: nothing to substitute (the multicast port is the configured one).
  const printed = await fencectl(['pacemaker', '--config', d.config, '--cluster', 'duo', '--agent', 'fence_xvm', '--key-file', IDENTITY_PATH]);
  t.is(printed.exitCode, 0, String(printed.stderr));
  const cib = String(printed.stdout);
  t.regex(cib, new RegExp(`name="ipport" value="${port}"`));
  const cibFile = join(tempDir('fb-cib-'), 'cib.xml');
  writeFileSync(cibFile, cib);
  const verify = await execa('crm_verify', ['--xml-file', cibFile, '-V'], { reject: false });
  t.is(verify.exitCode, 0, String(verify.stderr));
  for (const scope of ['resources', 'constraints']) {
    const section = new RegExp(`<${scope}>[^]*</${scope}>`).exec(cib)?.[0] ?? '';
    const load = await nodeA.run(['cibadmin', '--replace', '--scope', scope, '--xml-text', section]);
    t.is(load.exitCode, 0, load.stderr);
  }
  await nodeA.waitFor('both devices started, each away from its node', (x) =>
    [[a, b], [b, a]].every(([dev, host]) => new RegExp(`<resource id="fxvm-${dev}" resource_agent="stonith:fence_xvm" role="Started" active="true"[^>]*>\\s*<node name="${host}"`).test(x)),
  );
  // Each node's fencer reaches the broker with that node's own key (fence_xvm -o list over multicast).
  for (const [n, other] of [[nodeA, b], [nodeB, a]] as const) {
    const targets = await n.run(['stonith_admin', '--list-targets', `fxvm-${other}`, '--timeout', '60'], 120_000);
    t.is(targets.exitCode, 0, targets.stderr);
    t.regex(targets.stdout, new RegExp(other));
  }
  t.deepEqual([a, b].filter((n) => d?.audit().some((l) => l.node === n && l.action === 'list' && l.door === 'fence_virt/multicast')), [a, b], 'each node listed as itself, over multicast');

  const idBefore = await domid(b);
  t.is(await domstate(b), 'running');
  await nodeB.kill();

  await until(`${a} fences ${b}`, () => (d?.audit() ?? []).some((l) => l.action === 'reset' && l.target === b), 240_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\naudit ${JSON.stringify(d?.auditAll().slice(-8))}\n${a} log:\n${nodeA.log().slice(-4000)}`);
  });
  const resets = d.audit().filter((l) => l.action === 'reset');
  t.is(resets.length, 1, JSON.stringify(resets));
  t.like(resets[0], { cluster: 'duo', node: a, target: b, decision: 'allow', door: 'fence_virt/multicast', result: { ok: true } });
  t.is(await domstate(b), 'running');
  t.not(await domid(b), idBefore, 'a new domain id: it was really reset');
  let history = '';
  await until('the fencer records the fence', () => /<fence_event [^>]*status="success"/.test(history), 120_000, async () => {
    history = (await nodeA.run(['stonith_admin', '--history', b, '--output-as=xml'], 60_000)).stdout;
  }).catch((err: unknown) => {
    throw new Error(`${String(err)}; last history: ${history}`);
  });
  const event = /<fence_event [^>]*status="success"[^>]*>/.exec(history)?.[0] ?? '';
  t.regex(event, new RegExp(`target="${b}"`), history);
  t.regex(event, /action="reboot"/, history);
  t.regex(event, new RegExp(`delegate="${a}"|executioner="${a}"`), history);
});
