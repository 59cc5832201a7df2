// Two real Pacemaker + corosync nodes, each in its own network, mount and UTS
// namespaces on a test bridge (netns.ts), each node's "VM" a real QEMU domain
// of the same name behind the real daemon, which listens on the bridge. The
// fencing configuration is what `fencectl pacemaker` prints (one
// stonith:fence_broker device per node, kept off that node; each node its own
// key at the same path). When one node's stack dies, the survivor fences it on
// Pacemaker's own initiative.
import anyTest, { type TestFn } from 'ava';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { cleanup, fencectl, tempDir, until } from '../helpers.js';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDomain, domid, domstate, libvirtMissing, removeDomain, sweepStale } from '../libvirt-host.js';
import { labMissing, makeLab, type Lab } from './netns.js';
import { corosyncConf, IDENTITY_PATH, pacemakerMissing, startPacemakerNode, type PacemakerNode } from './pacemaker-host.js';

const missing = (await pacemakerMissing()) ?? (await labMissing()) ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs Pacemaker, corosync, network namespaces and libvirt: ${missing}`);
if (missing) console.error(`two-node pacemaker tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let d: Daemon | undefined;
let lab: Lab | undefined;
const nodes: PacemakerNode[] = [];
const created: string[] = [];

anyTest.after.always(async () => {
  if (missing) return;
  await cleanup(...nodes.map((n) => () => n.stop()), () => d?.stop(), () => lab?.remove(), () => Promise.all(created.map(removeDomain)));
});

test('two nodes: one node\'s stack dies, and the survivor fences it through fence_broker on Pacemaker\'s own initiative', async (t) => {
  await sweepStale();
  lab = await makeLab(2);
  const a = await createDomain('pma', true, (n) => created.push(n));
  const b = await createDomain('pmb', true, (n) => created.push(n));
  d = await startDaemon({
    clusters: { duo: { domains: [a, b], nodes: { [a]: a, [b]: b } } },
    toolstack: '{ type: virsh, uri: "qemu:///system" }',
    listenHost: lab.host,
  });
  const conf = corosyncConf({ [a]: lab.nodes[0]?.address as string, [b]: lab.nodes[1]?.address as string });
  // Both at once: with two_node, corosync waits for all before it has quorum.
  const started = await Promise.allSettled([
    startPacemakerNode(a, { corosyncConf: conf, netns: lab.nodes[0]?.netns as string, identity: d.key(a) }),
    startPacemakerNode(b, { corosyncConf: conf, netns: lab.nodes[1]?.netns as string, identity: d.key(b) }),
  ]);
  for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  const [nodeA, nodeB] = nodes as [PacemakerNode, PacemakerNode];
  await nodeA.waitFor('both nodes online', (x) => [a, b].every((n) => new RegExp(`<node name="${n}"[^>]* online="true"`).test(x)));

  // The configuration fencectl pacemaker writes for the tenant: one device per
  // node, kept off the node it fences. crm_verify accepts it as printed; its
  // sections are loaded into the running cluster as they are (the config
  // listens on port 0, so the port the daemon took is put in).
  const printed = await fencectl(['pacemaker', '--config', d.config, '--cluster', 'duo', '--identity-file', IDENTITY_PATH]);
  t.is(printed.exitCode, 0, String(printed.stderr));
  const cib = String(printed.stdout).replaceAll(`value="${lab.host}:0"`, `value="${lab.host}:${d.port}"`);
  const cibFile = join(tempDir('fb-cib-'), 'cib.xml');
  writeFileSync(cibFile, cib);
  const verify = await execa('crm_verify', ['--xml-file', cibFile, '-V'], { reject: false });
  t.is(verify.exitCode, 0, String(verify.stderr));
  for (const scope of ['resources', 'constraints']) {
    const section = new RegExp(`<${scope}>[^]*</${scope}>`).exec(cib)?.[0] ?? '';
    const load = await nodeA.run(['cibadmin', '--replace', '--scope', scope, '--xml-text', section]);
    t.is(load.exitCode, 0, load.stderr);
  }
  // Each device runs on the other node: never on the node it fences.
  await nodeA.waitFor('both devices started, each away from its node', (x) =>
    [[a, b], [b, a]].every(([dev, host]) => new RegExp(`<resource id="fb-${dev}" resource_agent="stonith:fence_broker" role="Started" active="true"[^>]*>\\s*<node name="${host}"`).test(x)),
  );
  // Each node's fencer reaches the broker with that node's own key, and sees both domains.
  for (const [n, other] of [[nodeA, b], [nodeB, a]] as const) {
    const targets = await n.run(['stonith_admin', '--list-targets', `fb-${other}`, '--timeout', '60'], 120_000);
    t.is(targets.exitCode, 0, targets.stderr);
    t.regex(targets.stdout, new RegExp(other));
  }
  t.deepEqual([a, b].filter((n) => d?.audit().some((l) => l.node === n && l.action === 'list')), [a, b], 'each node listed as itself');

  const idBefore = await domid(b);
  t.is(await domstate(b), 'running');
  await nodeB.kill();

  // Pacemaker on a notices b is gone and fences it (stonith-action reboot) by itself.
  await until(`${a} fences ${b}`, () => (d?.audit() ?? []).some((l) => l.action === 'reset' && l.target === b), 240_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\naudit ${JSON.stringify(d?.audit().slice(-5))}\n${a} log:\n${nodeA.log().slice(-4000)}`);
  });
  const resets = (d.audit()).filter((l) => l.action === 'reset');
  t.is(resets.length, 1, JSON.stringify(resets));
  t.like(resets[0], { cluster: 'duo', node: a, target: b, decision: 'allow', result: { ok: true } });
  t.is(await domstate(b), 'running');
  t.not(await domid(b), idBefore, 'a new domain id: it was really reset');
  // Pacemaker's own record: the fence of b succeeded, and a did it.
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
  t.log(history.split('\n').filter((l) => /fence_event/.test(l)).join('\n'));
});
