// npm run bench:coordination — what the fleet's shared fence race costs: the
// facts read, the claim and the finish of one fence (broker/coordination/),
// local (in process) against etcd (a real single-member etcd on loopback,
// Debian's etcd-server, started here), measured in the same run. A claim per
// fence is the only added latency on the fencing path; reads never pay it.
// The calls each step makes are counted by etcd itself (its /metrics,
// grpc_server_started_total by method), so the count is the server's, not ours.
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import type { Claim, Coordination } from '../broker/coordination/coordination.js';
import { EtcdCoordination } from '../broker/coordination/etcd.js';
import { LocalCoordination } from '../broker/coordination/local.js';

const ITER = Number(process.env.BENCH_ITER ?? 500);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? NaN;

interface Times {
  fence: number[];
  claim: number[];
}

/** One fence's coordination: facts, claim, finish (confirmed), each on its own pair of domains. */
async function run(c: Coordination, tag: string): Promise<Times> {
  const out: Times = { fence: [], claim: [] };
  for (let i = 0; i < ITER; i++) {
    const claim: Claim = { cluster: `b${tag}`, node: `n${i}`, requesterDomain: `n${i}`, target: `t${i}`, requestId: String(i), raceWindowMs: 60_000, stormWindowMs: 60_000, stormLimit: 1_000_000 };
    const t0 = performance.now();
    await c.facts({ cluster: claim.cluster, node: claim.node, requesterDomain: claim.requesterDomain, stormWindowMs: 60_000 });
    const t1 = performance.now();
    const r = await c.claim(claim);
    const t2 = performance.now();
    if (r.outcome !== 'claimed') throw new Error(`claim ${i}: ${r.outcome}`);
    await c.finish(claim, 'fenced');
    out.fence.push(performance.now() - t0);
    out.claim.push(t2 - t1);
  }
  return out;
}

/** etcd's own count of gRPC calls started, by method. */
async function calls(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^grpc_server_started_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\d+)/gm)) out.set(m[1] as string, (out.get(m[1] as string) ?? 0) + Number(m[2]));
  return out;
}
const perFence = (before: Map<string, number>, after: Map<string, number>): string =>
  [...after]
    .map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / ITER] as const)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');

const net = `127.${randomInt(1, 250)}.${randomInt(1, 250)}.1`;
const endpoint = `http://${net}:2379`;
const dir = mkdtempSync(join(tmpdir(), 'fb-bench-etcd-'));
const etcd = execa('etcd', ['--name', 'b', '--data-dir', join(dir, 'b'), '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint, '--listen-peer-urls', `http://${net}:2380`, '--initial-advertise-peer-urls', `http://${net}:2380`, '--initial-cluster', `b=http://${net}:2380`, '--log-level', 'warn'], { reject: false, stdio: 'ignore' });
try {
  for (let i = 0; ; i++) {
    const h = await execa('etcdctl', ['--endpoints', endpoint, 'endpoint', 'health'], { reject: false, env: { ETCDCTL_API: '3' } });
    if (h.exitCode === 0) break;
    if (i > 300) throw new Error('etcd did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
  const remote = new EtcdCoordination({ endpoints: [endpoint], prefix: '/bench', timeoutMs: 5_000, hostId: 'bench' });
  // Warm both (connections, JIT) before measuring.
  await run(new LocalCoordination(), 'warm');
  const local = await run(new LocalCoordination(), 'l');
  await run(remote, 'w');
  const before = await calls(endpoint);
  const viaEtcd = await run(remote, 'e');
  const after = await calls(endpoint);
  await remote.close();
  const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
  console.log(`coordination of one fence (facts + claim + finish), ${ITER} fences each, same run:`);
  console.log(`  local: median ${fmt(median(local.fence))}, p99 ${fmt(p99(local.fence))}; claim alone: median ${fmt(median(local.claim))}`);
  console.log(`  etcd (1 member, loopback, fsync on): median ${fmt(median(viaEtcd.fence))}, p99 ${fmt(p99(viaEtcd.fence))}`);
  console.log(`  etcd claim alone: median ${fmt(median(viaEtcd.claim))}, p99 ${fmt(p99(viaEtcd.claim))}`);
  console.log(`  etcd calls per fence (server's count, by method): ${perFence(before, after)}`);
  console.log(`  ratio etcd/local (medians): ${(median(viaEtcd.fence) / median(local.fence)).toFixed(0)}x`);
} finally {
  etcd.kill('SIGKILL');
  await etcd;
}
