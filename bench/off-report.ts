// The section of BENCHMARKS.md that `npm run bench:off` (bench/off.bench.ts)
// writes, and the bootstrap interval of its ratios. Apart from the runner so
// that `npm run bench` (bench/report.ts) can keep the section as it is.
import { max, median, min, ms, ratio } from './stats.js';

/** This section's heading in BENCHMARKS.md (`npm run bench` keeps the section as it is). */
export const OFF_HEADING = '## `off` through the stock clients, many rounds (`npm run bench:off`)';

/** Each client against fence-broker's door and against fence_virtd. */
export const PAIRS = [
  { client: 'fence_virt -T', ours: 'fence_virt -T → fence-broker', theirs: 'fence_virt' },
  { client: 'fence_xvm', ours: 'fence_xvm → fence-broker', theirs: 'fence_xvm → fence_virtd' },
] as const;
export const RAW = 'virsh (raw)';
export const NAMES = [...PAIRS.flatMap((p) => [p.ours, p.theirs]), RAW];

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** A small seeded generator (mulberry32): the interval is the same every time the report is rendered from the same samples. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** 95 % bootstrap interval of mean(a) / mean(b), each resampled on its own. */
export function ratioInterval(a: number[], b: number[], draws = 4_000): [number, number] {
  if (a.length < 2 || b.length < 2) return [NaN, NaN];
  const rnd = seeded(a.length * 7919 + b.length);
  const resampledMean = (xs: number[]) => {
    let s = 0;
    for (let i = 0; i < xs.length; i++) s += xs[Math.floor(rnd() * xs.length)] as number;
    return s / xs.length;
  };
  const r = Array.from({ length: draws }, () => resampledMean(a) / resampledMean(b)).sort((x, y) => x - y);
  return [r[Math.floor(draws * 0.025)] as number, r[Math.ceil(draws * 0.975) - 1] as number];
}

export interface OffSample {
  ms: number[];
  errors: string[];
  /** fence-broker: ms from the client's spawn to Broker.handle (audit time − duration_ms). */
  reachMs: number[];
  /** fence-broker: ms inside Broker.handle (audit duration_ms). */
  insideMs: number[];
}

/** The section, from the samples. */
export function renderOffSection(o: { rounds: number; quick: boolean; date: string; commit: string; load: [string, string]; samples: Map<string, OffSample> }): string {
  const s = (n: string) => o.samples.get(n) as OffSample;
  const rows = NAMES.map((n) => {
    const x = s(n);
    const pair = PAIRS.find((p) => p.ours === n);
    let vs = '';
    if (pair) {
      const [lo, hi] = ratioInterval(x.ms, s(pair.theirs).ms);
      vs = `${ratio(mean(x.ms), mean(s(pair.theirs).ms))} (95 %: ${Number.isFinite(lo) ? `${lo.toFixed(2)}–${hi.toFixed(2)}` : '—'})`;
    }
    return `| ${n === RAW ? 'raw `virsh destroy`' : `\`${n}\``} | ${x.ms.length}${x.errors.length ? ` (+${x.errors.length} failed)` : ''} | ${ms(mean(x.ms))} | ${ms(median(x.ms))} | ${ms(min(x.ms))} | ${ms(max(x.ms))} | ${ratio(mean(x.ms), mean(s(RAW).ms))} | ${vs} |`;
  });
  const targets = PAIRS.map((p) => {
    const r = mean(s(p.ours).ms) / mean(s(p.theirs).ms);
    const [lo, hi] = ratioInterval(s(p.ours).ms, s(p.theirs).ms);
    const verdict = !Number.isFinite(r) ? 'not measured' : r <= 1.0 ? (hi <= 1.0 ? '**met**' : '**met** (1.0 inside the interval)') : lo <= 1.0 ? '**not met** (1.0 inside the interval)' : '**not met**';
    return `| \`off\` through ${p.client} ≤ 1.0× the same client through fence_virtd (means) | ${ratio(mean(s(p.ours).ms), mean(s(p.theirs).ms))} (95 %: ${Number.isFinite(lo) ? `${lo.toFixed(2)}–${hi.toFixed(2)}` : '—'}) | ${verdict} |`;
  });
  const inside = PAIRS.map((p) => {
    const x = s(p.ours);
    return `- ${p.client} → fence-broker: the request reached Broker.handle ${ms(median(x.reachMs))} ms (median; ${ms(min(x.reachMs))}–${ms(max(x.reachMs))}) after the client's spawn and was inside it ${ms(median(x.insideMs))} ms (median; decision, destroy, the verifying state read, audit); the client's whole run took ${ms(median(x.ms))} ms (median).`;
  });
  const errors = NAMES.flatMap((n) => s(n).errors.slice(0, 3).map((e) => `- ${n}: ${e.slice(0, 300)}`));
  return `${OFF_HEADING}

${o.quick ? '**A quick run** (`--quick`, 2 rounds): it only shows that the bench works.\n\n' : ''}One real QEMU domain (TCG, 32 MiB, booting into firmware) fenced \`off\` by
each system in turn, ${o.rounds} rounds, the order rotated every round, the
guest started again and settled before each timed run; every run checked shut
off by our own \`virsh domstate\`. The stock clients \`fence_virt -T\` (TCP on
loopback) and \`fence_xvm\` (multicast from a guest network namespace on a
bridge) against fence-broker's fence_virt door and against \`fence_virtd\`
(libvirt backend), and raw \`virsh destroy\` (no agent, no verification).
Run ${o.date} at ${o.commit}, load ${o.load[0]} at the start and ${o.load[1]} at the end.
Intervals: 95 % bootstrap of the ratio of means (each system's runs resampled).

| system | runs | mean ms | median | min | max | ÷ raw destroy (means) | ÷ same client through fence_virtd (means) |
|---|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}

| target | this run | met? |
|---|---:|---|
${targets.join('\n')}

${inside.join('\n')}

Every system's times fall on the same steps ~200 ms apart: libvirt sends
QEMU SIGTERM and polls for its exit every 200 ms, whoever asked. What the door
adds beyond the destroy is the part before Broker.handle and the verifying
state read (~1 ms over a virsh session).${errors.length ? `\n\nFailed runs (left out of the figures):\n\n${errors.join('\n')}` : ''}
`;
}

/** `text` with the section under OFF_HEADING replaced by `section` (or put before the fleet section, or at the end). */
export function withOffSection(text: string, section: string): string {
  const at = text.indexOf(`${OFF_HEADING}\n`);
  if (at >= 0) {
    const rest = text.slice(at + OFF_HEADING.length + 1);
    const next = rest.search(/^## /m);
    return text.slice(0, at) + section + (next < 0 ? '' : `\n${rest.slice(next)}`);
  }
  const fleet = text.search(/^## Fleet coordination/m);
  if (fleet >= 0) return `${text.slice(0, fleet)}${section}\n${text.slice(fleet)}`;
  return `${text.trimEnd()}\n\n${section}`;
}

