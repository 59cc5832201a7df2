// The cross-host fence race under faults (issue 18): 200 two-node clusters
// spanning two brokers fence each other at once, through the real plugin
// asking both brokers, while etcd is made slow, cut off and crashed at random
// moments: answers or requests held by the proxy between each broker and
// each member (test/etcd-proxy.ts), connections dropped, members (the leader
// too) killed with SIGKILL and restarted. Nothing may kill both nodes of a
// cluster, every refusal is a lost race or an unavailable store, and nothing
// is reported off that is not.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectPath } from '../../common/paths.js';
import type { Reason } from '../../broker/policy/engine.js';
import { cleanup } from '../helpers.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { etcdMissing, startEtcd } from '../etcd-host.js';
import { startEtcdProxy, type EtcdProxy } from '../etcd-proxy.js';

const missing = await etcdMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs etcd: ${missing}`);
if (missing) console.error(`coordination chaos test skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

const PAIRS = Number(process.env.CHAOS_PAIRS ?? 200);
/** Clusters racing at once: 2 plugin processes each. */
const BATCH = 25;
const clusterNames = Array.from({ length: PAIRS }, (_, i) => `k${i}`);
const LOOPBACK_LIMITS = ['  limits: { max_unauthenticated_per_source: 128 }'];

async function agent(a: Daemon, b: Daemon, node: string, plug: string) {
  const input = [
    `ip=127.0.0.1:${a.port},127.0.0.1:${b.port}`,
    `identity_file=${a.key(node)}`,
    `host_key_fingerprint=${a.fingerprint},${b.fingerprint}`,
    'broker_timeout=45',
    'login_timeout=30',
    'action=off',
    `plug=${plug}`,
    '',
  ].join('\n');
  const r = await execa(projectPath('plugin', 'dist', 'fence_broker'), [], { input, reject: false, timeout: 120_000 });
  return { node, plug, exitCode: r.exitCode, stderr: String(r.stderr) };
}

test(`${PAIRS} mutual fences of two-node clusters spanning two brokers, with etcd slowed, cut and crashed at random moments: no double kill`, async (t) => {
  t.timeout(15 * 60_000);
  const etcd = await startEtcd();
  const proxiesA = await Promise.all(etcd.endpoints.map((e) => startEtcdProxy(e)));
  const proxiesB = await Promise.all(etcd.endpoints.map((e) => startEtcdProxy(e)));
  const clusters = Object.fromEntries(clusterNames.map((c) => [c, { domains: [`${c}-a`, `${c}-b`], nodes: { [`${c}-a`]: `${c}-a`, [`${c}-b`]: `${c}-b` } }]));
  const lines = (proxies: EtcdProxy[]) => ['  coordination:', '    type: etcd', `    endpoints: [${proxies.map((p) => p.endpoint).join(', ')}]`, `    prefix: /fb-chaos-${process.pid}`, '    timeout: 2'];
  const a = await startDaemon({ clusters, simDomains: Object.fromEntries(clusterNames.map((c) => [`${c}-a`, 'running'])), extraBroker: ['  host_id: host-a', ...LOOPBACK_LIMITS, ...lines(proxiesA)] });
  const b = await startDaemon({
    clusters,
    simDomains: Object.fromEntries(clusterNames.map((c) => [`${c}-b`, 'running'])),
    extraBroker: ['  host_id: host-b', ...LOOPBACK_LIMITS, ...lines(proxiesB)],
    reuseKeys: Object.fromEntries(clusterNames.flatMap((c) => [`${c}-a`, `${c}-b`]).map((n) => [n, a.key(n)])),
  });
  const faults: string[] = [];
  let racing = true;
  // One fault at a time, at random moments, until the fences are done.
  const chaos = (async () => {
    const all = [...proxiesA, ...proxiesB];
    while (racing) {
      await sleep(randomInt(200, 1_200));
      if (!racing) break;
      const p = all[randomInt(all.length)] as EtcdProxy;
      const which = randomInt(6);
      const ms = randomInt(300, 3_500);
      if (which === 0) {
        p.holdAnswers(ms);
        faults.push(`answers held ${ms} ms`);
      } else if (which === 1) {
        p.holdRequests(ms);
        faults.push(`requests held ${ms} ms`);
      } else if (which === 2) {
        p.dropAll();
        faults.push('connections dropped');
      } else if (which === 3) {
        for (const q of proxiesA) q.holdAnswers(ms);
        faults.push(`every answer to A held ${ms} ms`);
      } else {
        // A member crashes (the leader half the time) and comes back.
        const leader = which === 4 ? await etcd.leader().catch(() => undefined) : undefined;
        const m = leader ?? etcd.members[randomInt(etcd.members.length)];
        if (!m?.alive) continue;
        await m.kill();
        faults.push(`${leader ? 'leader ' : ''}${m.name} killed for ${ms} ms`);
        await sleep(ms);
        await m.restart();
      }
    }
  })();
  try {
    const results: Awaited<ReturnType<typeof agent>>[] = [];
    for (let i = 0; i < clusterNames.length; i += BATCH) {
      const batch = clusterNames.slice(i, i + BATCH);
      results.push(...(await Promise.all(batch.flatMap((c) => [agent(a, b, `${c}-a`, `${c}-b`), agent(a, b, `${c}-b`, `${c}-a`)]))));
    }
    racing = false;
    await chaos;
    const simA = a.sim();
    const simB = b.sim();
    const off = (domain: string) => (domain.endsWith('-a') ? simA[domain] : simB[domain]) === 'shut off';
    const doubleKills = clusterNames.filter((c) => off(`${c}-a`) && off(`${c}-b`));
    const oneSurvivor = clusterNames.filter((c) => off(`${c}-a`) !== off(`${c}-b`)).length;
    const audit = [...a.audit(), ...b.audit()].filter((l) => l.action === 'off');
    const byCode = new Map<string, number>();
    for (const l of audit) byCode.set(String(l.code), (byCode.get(String(l.code)) ?? 0) + 1);
    t.log(`${faults.length} faults (${faults.filter((f) => f.includes('killed')).length} member crashes); ${oneSurvivor} of ${PAIRS} clusters with one survivor, ${PAIRS - oneSurvivor - doubleKills.length} with both refused; broker replies: ${JSON.stringify(Object.fromEntries(byCode))}`);
    t.deepEqual(doubleKills, [], 'both nodes of a cluster fenced');
    // Every refusal is a lost race or an unavailable store; no other failure.
    const odd = audit.filter((l) => {
      const codes = (l.reasons as Reason[]).map((r) => r.code);
      if (l.code === 'refused') return !codes.every((c) => c === 'fence_race_lost');
      return !['ok', 'not_found', 'coordination_unavailable'].includes(String(l.code));
    });
    t.deepEqual(odd.map((l) => `${String(l.node)} → ${String(l.target)}: ${String(l.code)} ${JSON.stringify(l.reasons)}`), []);
    // Nothing reported off that is not: not by a broker, not by the plugin.
    const falseOk = audit.filter((l) => l.code === 'ok' && !off(String(l.target)));
    t.deepEqual(falseOk.map((l) => `${String(l.node)} → ${String(l.target)}`), []);
    const pluginOk = results.filter((r) => r.exitCode === 0);
    t.deepEqual(pluginOk.filter((r) => !off(r.plug)).map((r) => `${r.node} → ${r.plug}`), []);
    t.true(oneSurvivor > 0, 'some races were decided');
  } finally {
    racing = false;
    await chaos.catch(() => undefined);
    await cleanup(...[a, b].map((d) => () => d.stop()), ...[...proxiesA, ...proxiesB].map((p) => () => p.close()), () => etcd.stop());
  }
});
