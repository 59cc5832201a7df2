// (b) Fence storm: N domains of N tenant clusters fenced at once (N processes
// started together, each with its own tenant key for fence_broker and fence_xvm,
// fence_xvm each from its tenant's guest namespace), total wall
// time from the first spawn to the last exit, systems in rotating order per
// round; every domain is checked shut off afterwards and started again
// outside the timed part, and its firmware boot let finish before the next.
import { brokerLine, type BenchBroker } from './broker.js';
import { domstate, ensureRunning, settled } from './domains.js';
import type { Lifecycle } from './lifecycle.js';
import { failure } from './proc.js';
import { ms, rotate } from './stats.js';
import type { System } from './systems.js';

const STORM_TIMEOUT_MS = 180_000;
export const STORM_SYSTEMS = ['fence_broker', 'fence_xvm → fence-broker', 'fence_virt', 'fence_virsh', 'virsh (raw)'];
const THROUGH_BROKER = new Set(['fence_broker', 'fence_xvm → fence-broker']);

export interface StormSample {
  /** Wall time of each successful storm, ms. */
  ms: number[];
  /** Slowest single process of each successful storm, ms. */
  slowestMs: number[];
  /** Systems through fence-broker: per storm, the longest of its requests inside the broker (audit duration_ms). */
  brokerMaxMs: number[];
  /** ...and when the last of them reached Broker.handle, ms after the first spawn (audit time − duration_ms). */
  lastInMs: number[];
  errors: string[];
}

export async function storm(life: Lifecycle, all: System[], domains: string[], rounds: number, broker: BenchBroker): Promise<Map<string, StormSample>> {
  const chosen = STORM_SYSTEMS.map((n) => all.find((s) => s.name === n) as System);
  const result = new Map(chosen.map((s) => [s.name, { ms: [], slowestMs: [], brokerMaxMs: [], lastInMs: [], errors: [] } as StormSample]));
  for (let round = 0; round < rounds; round++) {
    for (const s of rotate(chosen, round)) {
      life.phase = `storm round ${round + 1}/${rounds}: ${s.name}`;
      await life.within(`bring the storm domains back to running`, Promise.all(domains.map(ensureRunning)), 120_000);
      await settled(domains);
      const epoch = Date.now();
      const t0 = performance.now();
      const runs = await Promise.all(domains.map((d) => s.run('off', d, life.boundMs(STORM_TIMEOUT_MS))));
      const wall = performance.now() - t0;
      const states = await Promise.all(domains.map(domstate));
      const errors = [
        ...runs.map((r, i) => failure(`${s.name} off ${domains[i]}`, r)).filter((e): e is string => e !== undefined),
        ...states.map((st, i) => (st === 'shut off' ? undefined : `${domains[i]} is "${st}" after the storm`)).filter((e): e is string => e !== undefined),
      ];
      const sample = result.get(s.name) as StormSample;
      if (errors.length) sample.errors.push(errors.join('; '));
      else {
        sample.ms.push(wall);
        sample.slowestMs.push(Math.max(...runs.map((r) => r.ms)));
        if (THROUGH_BROKER.has(s.name)) {
          const lines = domains.map((d) => brokerLine(broker, 'off', d, epoch));
          if (lines.every((l) => l !== undefined)) {
            const got = lines as { durationMs: number; at: number }[];
            sample.brokerMaxMs.push(Math.max(...got.map((l) => l.durationMs)));
            sample.lastInMs.push(Math.max(...got.map((l) => l.at - l.durationMs - epoch)));
          }
        }
      }
      process.stderr.write(`bench: storm ${round + 1}/${rounds} ${s.name.padEnd(14)} ${ms(wall).padStart(7)} ms${errors.length ? `  ERROR ${errors[0]}` : ''}\n`);
    }
  }
  return result;
}
