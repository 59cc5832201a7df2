// (a) End-to-end off, reboot and status of one real QEMU domain, each system
// in rotating order within a round so drift in the machine's load hits all of
// them alike. The domain is brought back to running before each timed run, and
// each result is checked with our own `virsh domstate` afterwards.
import { brokerMs, type BenchBroker } from './broker.js';
import { domstate, ensureRunning, settled } from './domains.js';
import type { Lifecycle } from './lifecycle.js';
import { failure, type Timed } from './proc.js';
import { ms, rotate } from './stats.js';
import type { Op, System } from './systems.js';

export const OPS: Op[] = ['off', 'reboot', 'status'];
const OP_TIMEOUT_MS = 90_000;

export interface Sample {
  /** Successful runs, ms. */
  ms: number[];
  errors: string[];
  /** fence_broker only: the broker's own time per request (audit duration_ms). */
  brokerMs: number[];
}

export type E2EResult = Record<Op, Map<string, Sample>>;

/** Why a run that exited 0 still did not do what it says, from the domain's state afterwards; undefined when it did. */
async function wrongOutcome(op: Op, system: string, domain: string, r: Timed): Promise<string | undefined> {
  if (system === 'node -e 0' || system === 'fence_broker --version') return undefined;
  const state = await domstate(domain);
  if (op === 'off' && state !== 'shut off') return `${system} off exited 0 but the domain is "${state}"`;
  if (op === 'reboot' && state !== 'running') return `${system} reboot exited 0 but the domain is "${state}"`;
  if (op === 'status' && system === 'virsh (raw)' && r.stdout.trim() !== 'running') return `virsh domstate said "${r.stdout.trim()}"`;
  return undefined;
}

export async function endToEnd(life: Lifecycle, all: System[], domain: string, rounds: number, statusRepeats: number, broker: BenchBroker): Promise<E2EResult> {
  const result = Object.fromEntries(OPS.map((op) => [op, new Map(all.filter((s) => s.ops.includes(op)).map((s) => [s.name, { ms: [], errors: [], brokerMs: [] } as Sample]))])) as E2EResult;
  for (let round = 0; round < rounds; round++) {
    for (const op of OPS) {
      // status is cheap and its spread (tens of ms) is near its size: more samples per round, still interleaved.
      const reps = op === 'status' ? statusRepeats : 1;
      for (let rep = 0; rep < reps; rep++) for (const s of rotate(all.filter((x) => x.ops.includes(op)), round * reps + rep)) {
        life.phase = `end-to-end round ${round + 1}/${rounds}: ${op} by ${s.name}`;
        if (await life.within(`bring ${domain} back to running`, ensureRunning(domain), 60_000)) await settled([domain]);
        const r = await s.run(op, domain, life.boundMs(OP_TIMEOUT_MS));
        const sample = result[op].get(s.name) as Sample;
        const err = failure(`${s.name} ${op}`, r) ?? (await wrongOutcome(op, s.name, domain, r));
        if (err) sample.errors.push(err);
        else sample.ms.push(r.ms);
        if (s.name === 'fence_broker' && !err) {
          const b = brokerMs(broker, op, domain);
          if (b !== undefined) sample.brokerMs.push(b);
        }
        process.stderr.write(`bench: e2e ${round + 1}/${rounds} ${op.padEnd(6)} ${s.name.padEnd(24)} ${ms(r.ms).padStart(7)} ms${err ? `  ERROR ${err}` : ''}\n`);
      }
    }
  }
  return result;
}
