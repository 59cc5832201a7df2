// Real Heartbeat v1 (crm no), two nodes on a test bridge, each node's "VM" a
// real QEMU domain of the same name behind the real daemon. Heartbeat is
// configured the way docs/tenant/heartbeat.md says (stonith_host with the
// plugin's parameters in getconfignames order). When one node dies, the
// survivor resets it through external/fence-broker on its own initiative and
// only then takes over its resource. Twice: with the Node face, and with the
// sh face on nodes that have no Node.js (its binary is covered in their mount
// namespace), its known_hosts line beside the key as fencectl prints it.
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { cleanup, fencectl, tempDir, until } from '../helpers.js';
import { createDomain, domid, domstate, libvirtMissing, removeDomain, sweepStale } from '../libvirt-host.js';
import { heartbeatMissing, startHeartbeatCluster, type HeartbeatNode } from './heartbeat-host.js';
import { labMissing, makeLab, type Lab } from './netns.js';

const missing = (await heartbeatMissing()) ?? (await labMissing()) ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs Heartbeat, cluster-glue, network namespaces and libvirt: ${missing}`);
if (missing) console.error(`heartbeat tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

async function heartbeatCase(t: ExecutionContext, face: 'node' | 'sh', tags: [string, string]): Promise<void> {
  let d: Daemon | undefined;
  let lab: Lab | undefined;
  let nodes: HeartbeatNode[] = [];
  const created: string[] = [];
  try {
    await sweepStale();
    lab = await makeLab(2);
    const a = await createDomain(tags[0], true, (n) => created.push(n));
    const b = await createDomain(tags[1], true, (n) => created.push(n));
    d = await startDaemon({
      clusters: { hb: { domains: [a, b], nodes: { [a]: a, [b]: b } } },
      toolstack: '{ type: virsh, uri: "qemu:///system" }',
      listenHost: lab.host,
    });
    const daemon = d;
    const resourceLog = join(tempDir('fb-hbres-'), 'resource.log');
    writeFileSync(resourceLog, '');
    const events = () => readFileSync(resourceLog, 'utf8').split('\n').filter(Boolean);
    // The line fencectl heartbeat prints (docs/tenant/heartbeat.md): every
    // parameter, positionally, in getconfignames order; with --face sh also the
    // known_hosts line for the file beside the key. The config listens on port
    // 0, so the port the daemon took is put in.
    const printed = await fencectl(['heartbeat', '--config', d.config, '--cluster', 'hb', '--face', face]);
    t.is(printed.exitCode, 0, String(printed.stderr));
    const [stonithLine, knownHostsLine, ...more] = String(printed.stdout).split('\n').filter((l) => l && !l.startsWith('#'));
    t.deepEqual(more, []);
    const stonithHost = (stonithLine as string).replace(`${lab.host} 0 `, `${lab.host} ${d.port} `);
    t.is(stonithHost, `stonith_host * external/fence-broker ${lab.host} ${d.port} fence /etc/fence-broker/id_ed25519 ${d.fingerprint} 45 5`);
    const keyDirFiles: Record<string, string> = {};
    if (face === 'sh') {
      t.regex(knownHostsLine ?? '', new RegExp(`^\\[${lab.host.replace(/\./g, '\\.')}\\]:0 ssh-ed25519 AAAA\\S+$`));
      keyDirFiles['id_ed25519.known_hosts'] = `${knownHostsLine}\n`;
    } else t.is(knownHostsLine, undefined);
    const values = stonithHost.replace('stonith_host * external/fence-broker ', '');
    nodes = await startHeartbeatCluster({ names: [a, b], resourceOwner: b, stonithHost, keys: { [a]: d.key(a), [b]: d.key(b) }, face, keyDirFiles }, lab, resourceLog);
    const [nodeA, nodeB] = nodes as [HeartbeatNode, HeartbeatNode];
    const hbLogs = () => `\n--- ${a} ---\n${nodeA.log().slice(-3000)}\n--- ${b} ---\n${nodeB.log().slice(-3000)}`;

    await until(`${b} starts its resource`, () => events().includes(`start ${b}`), 180_000).catch((err: unknown) => {
      throw new Error(`${String(err)}${hbLogs()}`);
    });
    if (face === 'sh') t.not((await nodeA.run(['node', '-e', '0'])).exitCode, 0, 'this node has no Node.js');
    // docs/tenant/heartbeat.md's check by hand, with the same values: cluster-glue's stonith CLI on a node.
    const status = await nodeA.run(['stonith', '-t', 'external/fence-broker', '-p', values, '-S']);
    t.is(status.exitCode, 0, status.stderr);
    const hosts = await nodeA.run(['stonith', '-t', 'external/fence-broker', '-p', values, '-l']);
    t.is(hosts.exitCode, 0, hosts.stderr);
    t.deepEqual(hosts.stdout.split('\n').filter(Boolean).sort(), [a, b].sort());

    const idBefore = await domid(b);
    t.is(await domstate(b), 'running');

    await nodeB.kill();
    await until(`${a} takes over the resource`, () => events().includes(`start ${a}`), 180_000).catch((err: unknown) => {
      throw new Error(`${String(err)}; resource events ${JSON.stringify(events())}; audit ${JSON.stringify(daemon.audit())}${hbLogs()}`);
    });

    // The broker: node a asked for the reset of b's domain, and it was done.
    const resets = d.audit().filter((l) => l.action === 'reset');
    t.is(resets.length, 1, JSON.stringify(resets));
    t.like(resets[0], { cluster: 'hb', node: a, target: b, decision: 'allow', result: { ok: true } });
    // libvirt, the independent witness: b's domain was really restarted.
    t.is(await domstate(b), 'running');
    t.not(await domid(b), idBefore, 'a new domain id: it was really reset');
    // Heartbeat itself says it reset the node through the plugin, and took over only after.
    const log = nodeA.log();
    t.regex(log, new RegExp(`Resetting node ${b} with \\[fence-broker\\][^]*node ${b} now reset\\.`), hbLogs());
    t.deepEqual(events(), [`start ${b}`, `start ${a}`]);
    t.log(`${a}'s Heartbeat log on the fence (${face} face):\n${log.split('\n').filter((l) => /stonith|reset|takeover|dead/i.test(l)).slice(-8).join('\n')}`);
  } finally {
    await cleanup(...nodes.map((n) => () => n.stop()), () => d?.stop(), () => lab?.remove(), () => Promise.all(created.map(removeDomain)));
  }
}

test('Heartbeat v1: when a node dies, the survivor resets it through external/fence-broker, then takes over its resource', (t) => heartbeatCase(t, 'node', ['hba', 'hbb']));

test('Heartbeat v1 with the sh face on nodes without Node.js: the survivor resets the dead node through it, then takes over', (t) => heartbeatCase(t, 'sh', ['hsa', 'hsb']));
