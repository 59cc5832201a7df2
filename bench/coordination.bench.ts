// npm run bench:coordination — what the fleet's shared fence race costs: the
// facts read and the claim transaction of one fence (broker/coordination/),
// local (in process) against etcd (a real single-member etcd on loopback,
// Debian's etcd-server, started here), measured in the same run. A claim per
// fence is the only added latency on the fencing path; reads never pay it.
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import type { Coordination } from '../broker/coordination/coordination.js';
import { EtcdCoordination } from '../broker/coordination/etcd.js';
import { LocalCoordination } from '../broker/coordination/local.js';

const ITER = Number(process.env.BENCH_ITER ?? 500);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? NaN;

/** One fence's coordination: facts, claim, finish (confirmed), each on its own pair of domains. */
async function run(c: Coordination, tag: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < ITER; i++) {
    const claim = { cluster: `b${tag}`, node: `n${i}`, requesterDomain: `n${i}`, target: `t${i}`, requestId: String(i), raceWindowMs: 60_000, stormWindowMs: 60_000 };
    const t0 = performance.now();
    await c.facts({ cluster: claim.cluster, node: claim.node, requesterDomain: claim.requesterDomain, stormWindowMs: 60_000 });
    const r = await c.claim(claim);
    if (r.outcome !== 'claimed') throw new Error(`claim ${i}: ${r.outcome}`);
    await c.finish(claim, true);
    times.push(performance.now() - t0);
  }
  return times;
}

const net = `127.${randomInt(1, 250)}.${randomInt(1, 250)}.1`;
const dir = mkdtempSync(join(tmpdir(), 'fb-bench-etcd-'));
const etcd = execa('etcd', ['--name', 'b', '--data-dir', join(dir, 'b'), '--listen-client-urls', `http://${net}:2379`, '--advertise-client-urls', `http://${net}:2379`, '--listen-peer-urls', `http://${net}:2380`, '--initial-advertise-peer-urls', `http://${net}:2380`, '--initial-cluster', `b=http://${net}:2380`, '--log-level', 'warn'], { reject: false, stdio: 'ignore' });
try {
  for (let i = 0; ; i++) {
    const h = await execa('etcdctl', ['--endpoints', `http://${net}:2379`, 'endpoint', 'health'], { reject: false, env: { ETCDCTL_API: '3' } });
    if (h.exitCode === 0) break;
    if (i > 300) throw new Error('etcd did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
  const remote = new EtcdCoordination({ endpoints: [`http://${net}:2379`], prefix: '/bench', timeoutMs: 5_000, hostId: 'bench' });
  // Warm both (connections, JIT) before measuring.
  await run(new LocalCoordination(), 'warm');
  const local = await run(new LocalCoordination(), 'l');
  const viaEtcd = await run(remote, 'e');
  await remote.close();
  const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
  console.log(`coordination of one fence (facts + claim + finish), ${ITER} fences each, same run:`);
  console.log(`  local: median ${fmt(median(local))}, p99 ${fmt(p99(local))}`);
  console.log(`  etcd (1 member, loopback, fsync on): median ${fmt(median(viaEtcd))}, p99 ${fmt(p99(viaEtcd))}`);
  console.log(`  ratio etcd/local (medians): ${(median(viaEtcd) / median(local)).toFixed(0)}x`);
} finally {
  etcd.kill('SIGKILL');
  await etcd;
}
