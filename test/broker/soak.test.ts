// A 60 s soak through the real daemon: 50 clients, each a node of one of 10
// tenant clusters on its own address (as guests are), each sending one request
// per new SSH connection, mixed status / off / on of its cluster's domains on
// the sim toolstack. Zero errors, a bounded p99, a flat broker RSS, and
// exactly one outcome audit line per request (matched by request id).
import test from 'ava';
import { startDaemon } from '../broker-daemon.js';
import { answerOf, connectAs, execOn } from '../ssh-client.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const CLUSTERS = 10;
const NODES = 5;
const VMS = 5;

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

test(`soak: ${CLUSTERS * NODES} clients for ${SECONDS} s, zero errors, bounded p99, flat RSS, one audit line per request`, async (t) => {
  const clusters: Parameters<typeof startDaemon>[0]['clusters'] = {};
  for (let c = 0; c < CLUSTERS; c++) {
    const nodes: Record<string, string> = {};
    for (let n = 0; n < NODES; n++) nodes[`c${c}-n${n}`] = `c${c}-n${n}`;
    clusters[`c${c}`] = { domains: [...Object.keys(nodes), ...Array.from({ length: VMS }, (_, v) => `c${c}-vm${v}`)], nodes };
  }
  const d = await startDaemon({ clusters });
  try {
    const latencies: number[] = [];
    const errors: string[] = [];
    const replyIds = new Set<string>();
    const rss: { at: number; kib: number }[] = [];
    const t0 = performance.now();
    const end = t0 + SECONDS * 1000;
    const sampler = setInterval(() => rss.push({ at: Math.round((performance.now() - t0) / 1000), kib: d.rssKiB() }), 5_000);

    const client = async (c: number, n: number, address: string) => {
      let i = 0;
      while (performance.now() < end) {
        const verb = ['status', 'status', 'off', 'on'][(i + n) % 4] as string;
        const target = `c${c}-vm${(i * 7 + n) % VMS}`;
        i++;
        const s = performance.now();
        try {
          const conn = await connectAs(d, `c${c}-n${n}`, { localAddress: address });
          try {
            const a = await answerOf(await execOn(conn, `${verb} ${target}`));
            if (a.exitCode !== 0 || a.reply.ok !== true) errors.push(`${verb} ${target}: exit ${a.exitCode} ${JSON.stringify(a.reply)}`);
            replyIds.add(String(a.reply.request_id));
          } finally {
            conn.end();
          }
        } catch (err) {
          errors.push(`${verb} ${target}: ${(err as Error).message}`);
        }
        latencies.push(performance.now() - s);
      }
    };
    const clients: Promise<void>[] = [];
    for (let c = 0; c < CLUSTERS; c++) for (let n = 0; n < NODES; n++) clients.push(client(c, n, `127.0.1.${c * NODES + n + 1}`));
    await Promise.all(clients);
    clearInterval(sampler);

    const sorted = [...latencies].sort((a, b) => a - b);
    const p50 = pct(sorted, 50);
    const p99 = pct(sorted, 99);
    t.log(`${latencies.length} requests in ${SECONDS} s (${Math.round(latencies.length / SECONDS)}/s), p50 ${Math.round(p50)} ms, p99 ${Math.round(p99)} ms, errors ${errors.length}`);
    t.log(`broker RSS (MiB) by second: ${rss.map((r) => `${r.at}s ${Math.round(r.kib / 1024)}`).join(', ')}`);
    t.deepEqual(errors.slice(0, 5), [], `${errors.length} errors`);
    t.true(p99 < 10_000, `p99 ${p99} ms`);

    // Flat RSS: after warm-up (10 s) it does not keep growing.
    const warm = rss.find((r) => r.at >= 10)?.kib ?? NaN;
    const peak = Math.max(...rss.filter((r) => r.at >= 10).map((r) => r.kib));
    t.true(peak <= warm * 1.5, `RSS grew from ${warm} KiB at 10 s to ${peak} KiB`);

    // Exactly one outcome line per request, and the same requests.
    const lines = d.audit();
    t.is(lines.length, latencies.length);
    const audited = new Set(lines.map((l) => String(l.request_id)));
    const unaudited = [...replyIds].filter((id) => !audited.has(id));
    const unanswered = [...audited].filter((id) => !replyIds.has(id));
    t.is(audited.size, lines.length, 'request ids are unique');
    t.deepEqual({ unaudited: unaudited.slice(0, 3), unanswered: unanswered.slice(0, 3) }, { unaudited: [], unanswered: [] }, `${unaudited.length} replies without an audit line, ${unanswered.length} audit lines without a reply`);
  } finally {
    await d.stop();
  }
});
