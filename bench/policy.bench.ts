// npm run bench:policy — decision latency of the compiled policy in process
// (opa-wasm), at 10, 1,000 and 10,000 domains, against the same policy and data
// behind `opa run --server` on loopback, measured in the same run.
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { currentBundle, findOpa, POLICIES_DIR } from '../broker/policy/bundle.js';
import { policyData, type PolicyData } from '../broker/policy/data.js';
import { PolicyEngine, type DecisionInput } from '../broker/policy/engine.js';
import type { ClusterConfig, Config } from '../broker/config/load.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const SIZES = [10, 1_000, 10_000];
const ITER = Number(process.env.BENCH_ITER ?? 50_000);
const SERVER_ITER = Number(process.env.BENCH_SERVER_ITER ?? 2_000);
const PER_CLUSTER = 5;

/** N domains in clusters of five, two member nodes each. */
function tenancy(n: number): Pick<Config, 'clusters' | 'admins'> {
  const clusters: Record<string, ClusterConfig> = {};
  const key = { type: 'ssh-ed25519', text: '', blob: '', fingerprint: '' };
  for (let c = 0; c * PER_CLUSTER < n; c++) {
    const name = `t${c}`;
    const domains = Array.from({ length: Math.min(PER_CLUSTER, n - c * PER_CLUSTER) }, (_, i) => `${name}-vm${i}`);
    const nodes: ClusterConfig['nodes'] = {};
    for (const d of domains.slice(0, 2)) nodes[d] = { name: d, key, domain: d };
    clusters[name] = { name, domains, nodes, actions: ['status', 'on', 'off', 'reset'], allowSelfOff: false };
  }
  return { clusters, admins: { ops: { name: 'ops', key } } };
}

/** A fixed mix: half allowed fences of a peer, the rest denials of several kinds. */
function requests(n: number, count: number): DecisionInput[] {
  const clusters = Math.ceil(n / PER_CLUSTER);
  const out: DecisionInput[] = [];
  let seed = 42;
  const rnd = (m: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % m);
  for (let i = 0; i < count; i++) {
    const c = rnd(clusters);
    const requester = { cluster: `t${c}`, node: `t${c}-vm0` };
    switch (i % 4) {
      case 0:
      case 1: out.push({ requester, action: 'off', target: `t${c}-vm1` }); break;
      case 2: out.push({ requester, action: 'off', target: `t${rnd(clusters)}-vm1` }); break;
      default: out.push({ requester, action: 'reset', target: `t${c}-vm0` });
    }
  }
  return out;
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
const us = (ns: number): string => (ns / 1000).toFixed(1);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function benchServer(opa: string, data: PolicyData, reqs: DecisionInput[]): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'fb-bench-'));
  writeFileSync(join(dir, 'data.json'), JSON.stringify(data));
  const port = await freePort();
  const server = execa(opa, ['run', '--server', '--addr', `127.0.0.1:${port}`, '--log-level', 'error', '--ignore', '*_test.rego', POLICIES_DIR, join(dir, 'data.json')], { reject: false });
  const url = `http://127.0.0.1:${port}/v1/data/fencing/decision`;
  try {
    for (let i = 0; i < 100; i++) {
      try { await fetch(`http://127.0.0.1:${port}/health`); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    const post = async (input: DecisionInput) => {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input }) });
      const j = (await r.json()) as { result?: { allow: boolean } };
      if (typeof j.result?.allow !== 'boolean') throw new Error(`opa server: unexpected reply ${JSON.stringify(j)}`);
    };
    for (const r of reqs.slice(0, 200)) await post(r);
    const times: number[] = [];
    for (const r of reqs.slice(0, SERVER_ITER)) {
      const t0 = process.hrtime.bigint();
      await post(r);
      times.push(Number(process.hrtime.bigint() - t0));
    }
    return times.sort((a, b) => a - b);
  } finally {
    server.kill();
    await server;
  }
}

const bundle = await currentBundle();
const opa = await findOpa();
console.log(`policy ${bundle.revision}; ${ITER} in-process decisions and ${SERVER_ITER} opa-server decisions per size; node ${process.version}\n`);
console.log('| domains | setData ms | wasm p50 µs | wasm p99 µs | wasm decisions/s | opa run --server p50 µs | server p99 µs | p50 ratio server/wasm |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
const p50s: number[] = [];
for (const n of SIZES) {
  const data = policyData(tenancy(n));
  const t0 = process.hrtime.bigint();
  const engine = await PolicyEngine.load(bundle, data);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const reqs = requests(n, ITER);
  let allowed = 0;
  for (const r of reqs.slice(0, 5_000)) engine.decide(r); // warm-up
  const times = new Array<number>(reqs.length);
  const start = process.hrtime.bigint();
  for (let i = 0; i < reqs.length; i++) {
    const a = process.hrtime.bigint();
    if (engine.decide(reqs[i] as DecisionInput).allow) allowed++;
    times[i] = Number(process.hrtime.bigint() - a);
  }
  const total = Number(process.hrtime.bigint() - start);
  times.sort((a, b) => a - b);
  if (allowed === 0 || allowed === reqs.length) throw new Error(`degenerate mix: ${allowed} allowed`);
  const server = await benchServer(opa, data, reqs);
  p50s.push(pct(times, 50));
  console.log(
    `| ${n.toLocaleString('en')} | ${loadMs.toFixed(1)} | ${us(pct(times, 50))} | ${us(pct(times, 99))} | ${Math.round(reqs.length / (total / 1e9)).toLocaleString('en')} | ` +
      `${us(pct(server, 50))} | ${us(pct(server, 99))} | ${(pct(server, 50) / pct(times, 50)).toFixed(0)}× |`,
  );
}
console.log(`\nflatness: wasm p50 at ${SIZES.at(-1)?.toLocaleString('en')} / at ${SIZES[0]} domains = ${((p50s.at(-1) ?? 0) / (p50s[0] ?? 1)).toFixed(2)}×`);
console.log(`RSS after all sizes: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
