// (d) The policy decision figures: bench/policy.bench.ts run as a child (it
// measures in its own process, undisturbed by this one's sockets and timers),
// its table kept as printed and its rows read back for the targets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectPath } from '../common/paths.js';
import { failure, runTimed } from './proc.js';

export interface PolicyRow {
  domains: number;
  p50us: number;
  p99us: number;
  serverP50us: number;
}

export interface PolicyResult {
  /** The bench's first line: policy revision, iteration counts, node version. */
  header: string;
  /** Its markdown table, as printed. */
  table: string[];
  rows: PolicyRow[];
  /** The other lines (flatness, RSS). */
  notes: string[];
}

export async function policyBench(o: { iter: number; serverIter: number; timeoutMs: number }): Promise<PolicyResult> {
  // Its opa-server data files go to a temp dir of their own (TMPDIR), removed afterwards.
  const tmp = mkdtempSync(join(tmpdir(), 'fb-bench-policy-'));
  const r = await runTimed(process.execPath, [projectPath('dist', 'bench', 'policy.bench.js')], {
    timeoutMs: o.timeoutMs,
    env: { ...process.env, TMPDIR: tmp, BENCH_ITER: String(o.iter), BENCH_SERVER_ITER: String(o.serverIter) },
  }).finally(() => rmSync(tmp, { recursive: true, force: true }));
  const err = failure('node dist/bench/policy.bench.js', r);
  if (err) throw new Error(err);
  const lines = r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  const table = lines.filter((l) => l.startsWith('|'));
  const num = (s: string | undefined) => Number(String(s).replace(/[,×]/g, ''));
  const rows = table.slice(2).map((l) => {
    const c = l.split('|').map((x) => x.trim()).slice(1, -1);
    return { domains: num(c[0]), p50us: num(c[2]), p99us: num(c[3]), serverP50us: num(c[5]) };
  });
  if (rows.length === 0 || rows.some((x) => Object.values(x).some((v) => !Number.isFinite(v)))) throw new Error(`policy bench: cannot read its table from:\n${r.stdout}`);
  return { header: lines[0] ?? '', table, rows, notes: lines.filter((l) => !l.startsWith('|') && l !== lines[0]) };
}
