// Clusters spanning hosts (DESIGN.md §4): two real brokers on loopback, each
// with its own simulated host (sim toolstack: host A runs every cluster's
// node a, host B its node b), coordinated through a real 3-member etcd. The
// guest plugin asks both brokers, as it does in production.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { projectPath } from '../../common/paths.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { etcdMissing, startEtcd, type EtcdCluster } from '../etcd-host.js';
import { request } from '../ssh-client.js';

const missing = await etcdMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs etcd: ${missing}`);
if (missing) console.error(`coordination tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let etcd: EtcdCluster | undefined;
anyTest.before(async () => {
  if (!missing) etcd = await startEtcd();
});
anyTest.after.always(async () => {
  await etcd?.stop();
});

const PAIRS = 50;
// Every simulated node connects from 127.0.0.1: the per-source handshake cap,
// meant for one address per node, would turn most of a burst away.
const LOOPBACK_LIMITS = ['  limits: { max_unauthenticated_per_source: 64 }'];
const clusterNames = Array.from({ length: PAIRS }, (_, i) => `c${i}`);

/** Two brokers (hosts A and B) sharing tenancy and node keys; A runs each cluster's -a domain, B its -b domain. */
async function twoHosts(coordination: string[], opts: { prefix?: string } = {}): Promise<[Daemon, Daemon]> {
  const clusters = Object.fromEntries(clusterNames.map((c) => [c, { domains: [`${c}-a`, `${c}-b`], nodes: { [`${c}-a`]: `${c}-a`, [`${c}-b`]: `${c}-b` } }]));
  const a = await startDaemon({
    clusters,
    simDomains: Object.fromEntries(clusterNames.map((c) => [`${c}-a`, 'running'])),
    extraBroker: ['  host_id: host-a', ...LOOPBACK_LIMITS, ...coordination.map((l) => l.replace('PREFIX', opts.prefix ?? '/fb-test'))],
  });
  const keys = Object.fromEntries(clusterNames.flatMap((c) => [`${c}-a`, `${c}-b`]).map((n) => [n, a.key(n)]));
  const b = await startDaemon({
    clusters,
    simDomains: Object.fromEntries(clusterNames.map((c) => [`${c}-b`, 'running'])),
    extraBroker: ['  host_id: host-b', ...LOOPBACK_LIMITS, ...coordination.map((l) => l.replace('PREFIX', opts.prefix ?? '/fb-test'))],
    reuseKeys: keys,
  });
  return [a, b];
}

/** fence_broker (the bundled plugin, fence-agents face) asking both brokers. */
async function agent(a: Daemon, b: Daemon, node: string, action: string, plug: string) {
  const input = [
    `ip=127.0.0.1:${a.port},127.0.0.1:${b.port}`,
    `identity_file=${a.key(node)}`,
    `host_key_fingerprint=${a.fingerprint},${b.fingerprint}`,
    'broker_timeout=45',
    'login_timeout=30',
    `action=${action}`,
    `plug=${plug}`,
    '',
  ].join('\n');
  const r = await execa(projectPath('plugin', 'dist', 'fence_broker'), [], { input, reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stderr: String(r.stderr) };
}

/** Every cluster's two nodes fence each other at the same instant; returns the clusters without exactly one survivor. */
async function mutualFences(a: Daemon, b: Daemon): Promise<string[]> {
  const bad: string[] = [];
  // Ten clusters at a time: twenty plugin processes racing, on a 2-core machine.
  for (let i = 0; i < clusterNames.length; i += 10) {
    await Promise.all(
      clusterNames.slice(i, i + 10).map(async (c) => {
        await Promise.all([agent(a, b, `${c}-a`, 'off', `${c}-b`), agent(a, b, `${c}-b`, 'off', `${c}-a`)]);
        const aOff = a.sim()[`${c}-a`] === 'shut off';
        const bOff = b.sim()[`${c}-b`] === 'shut off';
        if (aOff === bOff) {
          const lines = [...a.audit(), ...b.audit()].filter((l) => String(l.cluster) === c).map((l) => `${String(l.node)} ${String(l.action)} ${String(l.target)}: ${String(l.code)} ${JSON.stringify(l.reasons)}`);
          bad.push(`${c}: ${aOff ? 'both off' : 'both running'} (${lines.join(' | ')})`);
        }
      }),
    );
  }
  return bad;
}

const etcdLines = (extra: string[] = []) => ['  coordination:', '    type: etcd', `    endpoints: [${etcd?.endpoints.join(', ')}]`, '    prefix: PREFIX', '    timeout: 2', ...extra];

test('control: with coordination local, brokers on two hosts judge the mutual fence apart, and both nodes can die', async (t) => {
  const [a, b] = await twoHosts([]);
  try {
    const bad = await mutualFences(a, b);
    t.log(`coordination local: ${bad.length} of ${PAIRS} clusters without exactly one survivor`);
    // Not asserted to be all: the point is that it happens at all without a shared store.
    t.true(bad.length > 0, 'the race is lost between hosts without coordination');
  } finally {
    await a.stop();
    await b.stop();
  }
});

test(`with etcd, ${PAIRS} two-node clusters spanning hosts fence each other at once: every one keeps exactly one survivor`, async (t) => {
  const [a, b] = await twoHosts(etcdLines(), { prefix: `/fb-race-${process.pid}` });
  try {
    const bad = await mutualFences(a, b);
    t.deepEqual(bad, []);
    // The losers were refused by the policy, with its own reason, on both brokers.
    const lost = [...a.audit(), ...b.audit()].filter((l) => (l.reasons as string[]).some((r) => r.startsWith('fence_race_lost')));
    t.true(lost.length >= PAIRS, `${lost.length} fence_race_lost refusals`);
    t.log(`coordination etcd: 0 of ${PAIRS} clusters without exactly one survivor; ${lost.length} refusals for a lost race`);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('one etcd member killed: fencing still works; quorum lost: power actions are refused as coordination_unavailable, reads work, nothing is reported off', async (t) => {
  // A cluster of its own: this test kills members.
  const cluster = await startEtcd();
  const lines = ['  coordination:', '    type: etcd', `    endpoints: [${cluster.endpoints.join(', ')}]`, '    prefix: PREFIX', '    timeout: 2'];
  const [a, b] = await twoHosts(lines, { prefix: `/fb-quorum-${process.pid}` });
  try {
    await cluster.members[2]?.kill();
    const one = await agent(a, b, 'c0-a', 'off', 'c0-b');
    t.is(one.exitCode, 0, one.stderr);
    t.is(b.sim()['c0-b'], 'shut off');

    await cluster.members[1]?.kill();
    const r = await request(a, 'c1-a', 'off c1-b');
    t.like(r.reply, { ok: false, code: 'coordination_unavailable' });
    t.is(r.exitCode, 1);
    t.regex(String(r.reply.message), /nothing was done/);
    const viaPlugin = await agent(a, b, 'c2-a', 'off', 'c2-b');
    t.not(viaPlugin.exitCode, 0, 'the plugin reports failure, never success');
    t.is(b.sim()['c2-b'], 'running', 'nothing was powered off');
    t.is(b.sim()['c1-b'], 'running');
    const status = await request(b, 'c2-a', 'status c2-b');
    t.like(status.reply, { ok: true, state: 'on' }, 'reads need no coordination');
    const audited = a.audit().find((l) => l.node === 'c1-a' && l.action === 'off');
    t.like(audited, { code: 'coordination_unavailable', decision: 'error' });
    t.regex(String((audited?.reasons as string[])[0]), /^coordination_unavailable: etcd/);
  } finally {
    await a.stop();
    await b.stop();
    await cluster.stop();
  }
});
