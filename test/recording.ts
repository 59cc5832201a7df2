// A wrapper that records each toolstack call's start and end (a spy around a
// real toolstack), so tests can show what ran in parallel and what did not.
import type { Toolstack } from '../broker/toolstack/toolstack.js';

export interface Call {
  op: 'list' | 'state' | 'destroy' | 'start';
  domain: string;
  start: number;
  end: number;
}

export function recording(inner: Toolstack): { toolstack: Toolstack; calls: Call[] } {
  const calls: Call[] = [];
  const wrap = async <T>(op: Call['op'], domain: string, fn: () => Promise<T>): Promise<T> => {
    const call: Call = { op, domain, start: performance.now(), end: Number.NaN };
    calls.push(call);
    try {
      return await fn();
    } finally {
      call.end = performance.now();
    }
  };
  const toolstack: Toolstack = {
    describe: `recording ${inner.describe}`,
    list: () => wrap('list', '*', () => inner.list()),
    state: (d) => wrap('state', d, () => inner.state(d)),
    destroy: (d) => wrap('destroy', d, () => inner.destroy(d)),
    start: (d) => wrap('start', d, () => inner.start(d)),
  };
  return { toolstack, calls };
}

/** The largest number of the given calls in flight at one moment. */
export function maxInFlight(calls: Call[]): number {
  const edges = calls.flatMap((c) => [
    [c.start, 1],
    [c.end, -1],
  ]) as [number, number][];
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (now += d));
  return max;
}
