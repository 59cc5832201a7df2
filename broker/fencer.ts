// The fencer: what "off", "on", "reset" and "status" mean (DESIGN.md §4), on
// top of any Toolstack. Success is never taken from an exit status: after each
// action the state is re-read until it is confirmed or a bounded time passes.
// Requests for one domain run one at a time; different domains run in parallel.
import { checkDomainName, type DomainState, type Toolstack } from './toolstack/toolstack.js';

export type FenceAction = 'status' | 'on' | 'off' | 'reset';
export type PowerState = 'on' | 'off' | 'unknown';

export interface FenceResult {
  ok: boolean;
  action: FenceAction;
  target: string;
  /** The last state observed: "off" only when the toolstack said so (or the domain vanished after a destroy). */
  state: PowerState;
  message: string;
  /** What was done, in order, with the toolstack's words. */
  steps: string[];
  durationMs: number;
  /** reset only: whether the start after the verified off succeeded. */
  started?: boolean;
  /** The host does not have the domain (which, for off, is not proof of off). */
  notFound?: boolean;
}

export interface FencerOptions {
  /** Bound on waiting for off / running to be confirmed. */
  verifyMs: number;
  /** Pause between state reads while waiting. */
  pollMs: number;
}

/** One-at-a-time per key; callers for other keys do not wait. */
class KeyedLock {
  private tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Appends a step; a repeat of the previous one (polling) is counted, not repeated. */
function note(steps: string[], step: string): void {
  const last = steps.length - 1;
  const m = last >= 0 ? /^(.*?)(?: ×(\d+))?$/.exec(steps[last] as string) : null;
  if (m && m[1] === step) steps[last] = `${step} ×${Number(m[2] ?? 1) + 1}`;
  else steps.push(step);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Observed toolstack state → the three-valued answer. Missing is "unknown" here; callers say "not found". */
export function powerOf(s: DomainState): PowerState {
  return s.observed === 'running' ? 'on' : s.observed === 'stopped' ? 'off' : 'unknown';
}

export class Fencer {
  private readonly lock = new KeyedLock();

  constructor(
    private readonly toolstack: Toolstack,
    private readonly options: FencerOptions = { verifyMs: 30_000, pollMs: 100 },
  ) {}

  async do(action: FenceAction, target: string): Promise<FenceResult> {
    const t0 = performance.now();
    const steps: string[] = [];
    try {
      checkDomainName(target);
    } catch (err) {
      return { ok: false, action, target, state: 'unknown', message: errorText(err), steps, durationMs: 0 };
    }
    const result = await this.lock.run(target, async () => {
      switch (action) {
        case 'status':
          return this.status(target, steps);
        case 'off':
          return this.off(target, steps);
        case 'on':
          return this.on(target, steps);
        case 'reset':
          return this.reset(target, steps);
      }
    });
    return { ...result, action, target, steps, durationMs: Math.round(performance.now() - t0) };
  }

  /** A state read that never throws: a failed read is "unknown" with the reason. */
  private async read(target: string, steps: string[]): Promise<DomainState> {
    let s: DomainState;
    try {
      s = await this.toolstack.state(target);
    } catch (err) {
      s = { name: target, observed: 'unknown', raw: errorText(err) };
    }
    note(steps, `state: ${s.observed} (${s.raw})`);
    return s;
  }

  private async status(target: string, steps: string[]): Promise<Outcome> {
    const s = await this.read(target, steps);
    if (s.observed === 'missing') return { ok: false, state: 'unknown', message: `${target}: not found`, notFound: true };
    if (s.observed === 'unknown') return { ok: false, state: 'unknown', message: `${target}: state unknown (${s.raw})` };
    return { ok: true, state: powerOf(s), message: `${target} is ${powerOf(s)} (${s.raw})` };
  }

  /**
   * Hard off, verified. Already off is success; a domain the host does not have
   * is a failure; "off" is reported only once the toolstack shows it stopped, or
   * gone after our destroy (xl forgets destroyed domains).
   */
  private async off(target: string, steps: string[]): Promise<Outcome> {
    const before = await this.read(target, steps);
    // Not here is not proof of off: the domain may run on another host (migration).
    if (before.observed === 'missing') return { ok: false, state: 'unknown', message: `${target}: not found (${before.raw})`, notFound: true };
    if (before.observed === 'stopped') return { ok: true, state: 'off', message: `${target} was already off (${before.raw})` };
    let destroyed = false;
    try {
      await this.toolstack.destroy(target);
      destroyed = true;
      steps.push('destroy: done');
    } catch (err) {
      // Not decisive either way: the state decides.
      steps.push(`destroy: ${errorText(err)}`);
    }
    // Gone counts as off only after a destroy that succeeded (xl forgets destroyed
    // domains); gone after a failed destroy may be a migration or a typo, not a fence.
    const confirmed = (s: DomainState) => s.observed === 'stopped' || (destroyed && s.observed === 'missing');
    const after = await this.waitFor(target, steps, (s) => confirmed(s) || (!destroyed && s.observed === 'missing'));
    if (confirmed(after)) return { ok: true, state: 'off', message: `${target} is off (${after.raw})` };
    if (after.observed === 'missing') return { ok: false, state: 'unknown', message: `${target}: not found after a failed destroy; not confirmed off` };
    return {
      ok: false,
      state: powerOf(after),
      message: `${target}: not confirmed off within ${this.options.verifyMs} ms (last state: ${after.observed}, ${after.raw})`,
    };
  }

  private async on(target: string, steps: string[]): Promise<Outcome> {
    const before = await this.read(target, steps);
    if (before.observed === 'missing' && !before.startable) return { ok: false, state: 'unknown', message: `${target}: not found`, notFound: true };
    if (before.observed === 'running') return { ok: true, state: 'on', message: `${target} was already on (${before.raw})` };
    return this.startVerified(target, steps);
  }

  private async startVerified(target: string, steps: string[]): Promise<Outcome> {
    try {
      await this.toolstack.start(target);
      steps.push('start: done');
    } catch (err) {
      steps.push(`start: ${errorText(err)}`);
    }
    const after = await this.waitFor(target, steps, (s) => s.observed === 'running');
    if (after.observed === 'running') return { ok: true, state: 'on', message: `${target} is on (${after.raw})` };
    return {
      ok: false,
      state: powerOf(after),
      message: `${target}: not confirmed running within ${this.options.verifyMs} ms (last state: ${after.observed}, ${after.raw})`,
    };
  }

  /** Verified off, then start. Judged on the off part; a failed start is reported, not fatal. */
  private async reset(target: string, steps: string[]): Promise<Outcome> {
    const off = await this.off(target, steps);
    if (!off.ok) return off;
    const on = await this.startVerified(target, steps);
    if (on.ok) return { ok: true, state: 'on', message: `${target} was reset: off confirmed, then started`, started: true };
    return { ok: true, state: on.state, message: `${target} was fenced (off confirmed) but did not start again: ${on.message}`, started: false };
  }

  /** Re-reads the state until `done` holds or verifyMs passes; returns the last state. */
  private async waitFor(target: string, steps: string[], done: (s: DomainState) => boolean): Promise<DomainState> {
    const deadline = performance.now() + this.options.verifyMs;
    let s = await this.read(target, steps);
    while (!done(s) && performance.now() < deadline) {
      await sleep(this.options.pollMs);
      s = await this.read(target, steps);
    }
    return s;
  }
}

type Outcome = Pick<FenceResult, 'ok' | 'state' | 'message' | 'started' | 'notFound'>;
