// The fencer: what "off", "on", "reset" and "status" mean (docs/design.md §4), on
// top of any Toolstack. Success is never taken from an exit status: after each
// action the state is re-read until it is confirmed or a bounded time passes.
// Power actions on one domain run one at a time and never behind reads; reads
// of one domain share one toolstack read (domain-queue.ts); different domains
// run in parallel. A request's signal (deadline, client gone) stops it between
// toolstack steps and kills the step running.
import { setTimeout as sleep } from 'node:timers/promises';
import type { PowerState } from '../common/wire.js';
import { Busy, DomainQueue, Dropped, type QueueLimits } from './domain-queue.js';
import { abortReason, unlessAborted } from './abort.js';
import { checkDomainName, type DomainState, type Toolstack } from './toolstack/toolstack.js';

export type FenceAction = 'status' | 'on' | 'off' | 'reset';
export type { PowerState };

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
  /** A queue bound was reached; nothing was done. */
  busy?: boolean;
  /** The request gave up (deadline, client gone) before its work reached the toolstack. */
  dropped?: boolean;
  /**
   * A destroy was sent to the toolstack, whatever it answered: killing the
   * command at a deadline, or an error from a hypervisor stuck on storage, does
   * not stop it landing later. Only a domain the host does not have refutes it.
   */
  destroyIssued?: boolean;
}

export interface FencerOptions {
  /** Bound on waiting for off / running to be confirmed. */
  verifyMs: number;
  /** Pause between state reads while waiting. */
  pollMs: number;
  /** Per-domain queue bounds (default: 64 reads, 8 power actions). */
  queue?: QueueLimits;
  /** Hears every action's result (the metrics: durations by action and outcome). */
  observer?: FencerObserver;
}

export interface FencerObserver {
  done(result: FenceResult): void;
}

/** Per request: fires when its deadline passes or its client goes away. */
export interface FenceContext {
  signal?: AbortSignal;
}

/** Appends a step; a repeat of the previous one (polling) is counted, not repeated. */
function note(steps: string[], step: string): void {
  const last = steps.length - 1;
  const m = last >= 0 ? /^(.*?)(?: ×(\d+))?$/.exec(steps[last] as string) : null;
  if (m && m[1] === step) steps[last] = `${step} ×${Number(m[2] ?? 1) + 1}`;
  else steps.push(step);
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Observed toolstack state → the three-valued answer. Missing is "unknown" here; callers say "not found". */
export function powerOf(s: DomainState): PowerState {
  return s.observed === 'running' ? 'on' : s.observed === 'stopped' ? 'off' : 'unknown';
}

/** list / gethosts: which of the wanted domains this host has, with their states, or why the host could not say. */
export type ListResult = { ok: true; domains: string[]; states: Record<string, PowerState> } | { ok: false; message: string };

export class Fencer {
  private readonly queue: DomainQueue;
  /** The one host-wide list read in flight, shared by every list request meanwhile. */
  private listing: Promise<DomainState[]> | undefined;

  constructor(
    private readonly toolstack: Toolstack,
    private readonly options: FencerOptions = { verifyMs: 30_000, pollMs: 100 },
  ) {
    this.queue = new DomainQueue(options.queue ?? { maxReads: 64, maxPower: 8 });
  }

  async do(action: FenceAction, target: string, ctx: FenceContext = {}): Promise<FenceResult> {
    const t0 = performance.now();
    const steps: string[] = [];
    const { signal } = ctx;
    try {
      checkDomainName(target);
    } catch (err) {
      return { ok: false, action, target, state: 'unknown', message: errorText(err), steps, durationMs: 0 };
    }
    let result: Outcome;
    let destroyIssued = false;
    try {
      result =
        action === 'status'
          ? this.status(target, steps, await this.queue.read(target, () => this.stateOf(target), signal))
          : await this.queue.power(target, () => this.power(action, target, steps, signal, () => (destroyIssued = true)), signal);
    } catch (err) {
      if (err instanceof Busy) result = { ok: false, state: 'unknown', message: `busy: ${err.message}; nothing was done`, busy: true };
      else if (err instanceof Dropped) result = { ok: false, state: 'unknown', message: `dropped before reaching the toolstack: ${err.message}`, dropped: true };
      else throw err;
    }
    const out = { ...result, action, target, steps, durationMs: Math.round(performance.now() - t0), ...(destroyIssued ? { destroyIssued } : {}) };
    this.options.observer?.done(out);
    return out;
  }

  /**
   * Whether this host has `target` (running or stopped), from a read of that
   * domain alone, shared with the other reads of it in flight. Not from the
   * host-wide list: libvirt answers a list only once the destroys in progress
   * on other domains end, so in a fence storm the check waited them out
   * (measured: a `virsh list --all` started during 3 destroys took 1.78 s,
   * `virsh domstate` of a fourth domain 77 ms; a fence_xvm request of a storm
   * of 8 reached the broker 1.9 s late). Throws when the toolstack cannot say
   * (a dead hypervisor answers nothing).
   */
  async has(target: string, ctx: FenceContext = {}): Promise<boolean> {
    try {
      checkDomainName(target);
    } catch {
      return false; // a name no toolstack call may carry (the control domain) is never one this host answers for
    }
    const s = await this.queue.read(target, () => this.stateOf(target, ctx.signal), ctx.signal);
    if (s.observed === 'unknown') throw new Error(`${target}: state unknown (${s.raw})`);
    return s.observed !== 'missing';
  }

  /** The per-domain queues' depths (domain-queue.ts). */
  queueDepths(): ReturnType<DomainQueue['depths']> {
    return this.queue.depths();
  }

  /**
   * The wanted domains (the policy's view of the caller's) that this host
   * really has, with their states, from one toolstack list. A toolstack that
   * cannot be read fails it: a dead hypervisor must not look like a working
   * fencing device. Reads of the list in flight together share one call.
   */
  async list(wanted: readonly string[], ctx: FenceContext = {}): Promise<ListResult> {
    if (!this.listing) {
      const shared = this.toolstack.list();
      this.listing = shared;
      void shared.then(
        () => undefined,
        () => undefined,
      ).finally(() => {
        if (this.listing === shared) this.listing = undefined;
      });
    }
    let all: DomainState[];
    try {
      all = await (ctx.signal ? unlessAborted(this.listing, ctx.signal, (why) => new Error(why)) : this.listing);
    } catch (err) {
      return { ok: false, message: `the hypervisor did not answer: ${errorText(err)}` };
    }
    const byName = new Map(all.map((d) => [d.name, d]));
    const domains: string[] = [];
    const states: Record<string, PowerState> = {};
    for (const name of wanted) {
      const d = byName.get(name);
      if (!d || d.observed === 'missing') continue;
      domains.push(name);
      states[name] = powerOf(d);
    }
    return { ok: true, domains: domains.sort(), states };
  }

  private power(action: Exclude<FenceAction, 'status'>, target: string, steps: string[], signal: AbortSignal | undefined, issued: () => void): Promise<Outcome> {
    switch (action) {
      case 'off':
        return this.off(target, steps, signal, issued);
      case 'on':
        return this.on(target, steps, signal);
      case 'reset':
        return this.reset(target, steps, signal, issued);
    }
  }

  /** One state read that never throws: a failed read is "unknown" with the reason. */
  private async stateOf(target: string, signal?: AbortSignal): Promise<DomainState> {
    try {
      return await this.toolstack.state(target, signal ? { signal } : {});
    } catch (err) {
      return { name: target, observed: 'unknown', raw: errorText(err) };
    }
  }

  private async read(target: string, steps: string[], signal: AbortSignal | undefined): Promise<DomainState> {
    const s = await this.stateOf(target, signal);
    note(steps, `state: ${s.observed} (${s.raw})`);
    return s;
  }

  private status(target: string, steps: string[], s: DomainState): Outcome {
    note(steps, `state: ${s.observed} (${s.raw})`);
    if (s.observed === 'missing') return { ok: false, state: 'unknown', message: `${target}: not found`, notFound: true };
    if (s.observed === 'unknown') return { ok: false, state: 'unknown', message: `${target}: state unknown (${s.raw})` };
    return { ok: true, state: powerOf(s), message: `${target} is ${powerOf(s)} (${s.raw})` };
  }

  /**
   * Hard off, verified, on the shortest path: destroy first, then let the
   * state read settle what a failed destroy meant. Already off is success; a
   * domain the host does not have is a failure; "off" is reported only once
   * the toolstack shows it stopped, or gone after our destroy (xl forgets
   * destroyed domains). A destroy's exit status never decides alone.
   */
  private async off(target: string, steps: string[], signal: AbortSignal | undefined, issued: () => void): Promise<Outcome> {
    if (signal?.aborted) return { ok: false, state: 'unknown', message: `${target}: not destroyed: ${abortReason(signal)}` };
    let destroyed = false;
    try {
      issued();
      await this.toolstack.destroy(target, { signal });
      destroyed = true;
      steps.push('destroy: done');
    } catch (err) {
      // Already off, not here, or a real failure: the state decides.
      steps.push(`destroy: ${errorText(err)}`);
    }
    // Gone counts as off only after a destroy that succeeded; gone after a failed
    // destroy is a domain this host does not have (a migration, a typo): not found.
    const confirmed = (s: DomainState) => s.observed === 'stopped' || (destroyed && s.observed === 'missing');
    const after = await this.waitFor(target, steps, (s) => confirmed(s) || (!destroyed && s.observed === 'missing'), signal);
    if (!destroyed && after.observed === 'missing') return { ok: false, state: 'unknown', message: `${target}: not found (${after.raw}); not confirmed off`, notFound: true };
    if (confirmed(after)) return { ok: true, state: 'off', message: destroyed ? `${target} is off (${after.raw})` : `${target} was already off (${after.raw})` };
    return {
      ok: false,
      state: powerOf(after),
      message: `${target}: not confirmed off ${signal?.aborted ? `(${abortReason(signal)})` : `within ${this.options.verifyMs} ms`} (last state: ${after.observed}, ${after.raw})`,
    };
  }

  private async on(target: string, steps: string[], signal: AbortSignal | undefined): Promise<Outcome> {
    const before = await this.read(target, steps, signal);
    if (before.observed === 'missing' && !before.startable) return { ok: false, state: 'unknown', message: `${target}: not found`, notFound: true };
    if (before.observed === 'running') return { ok: true, state: 'on', message: `${target} was already on (${before.raw})` };
    return this.startVerified(target, steps, signal);
  }

  private async startVerified(target: string, steps: string[], signal: AbortSignal | undefined): Promise<Outcome> {
    if (signal?.aborted) return { ok: false, state: 'unknown', message: `${target}: not started: ${abortReason(signal)}` };
    try {
      await this.toolstack.start(target, { signal });
      steps.push('start: done');
    } catch (err) {
      steps.push(`start: ${errorText(err)}`);
    }
    const after = await this.waitFor(target, steps, (s) => s.observed === 'running', signal);
    if (after.observed === 'running') return { ok: true, state: 'on', message: `${target} is on (${after.raw})` };
    return {
      ok: false,
      state: powerOf(after),
      message: `${target}: not confirmed running ${signal?.aborted ? `(${abortReason(signal)})` : `within ${this.options.verifyMs} ms`} (last state: ${after.observed}, ${after.raw})`,
    };
  }

  /** Verified off, then start. Judged on the off part; a failed start is reported, not fatal. */
  private async reset(target: string, steps: string[], signal: AbortSignal | undefined, issued: () => void): Promise<Outcome> {
    const off = await this.off(target, steps, signal, issued);
    if (!off.ok) return off;
    const on = await this.startVerified(target, steps, signal);
    if (on.ok) return { ok: true, state: 'on', message: `${target} was reset: off confirmed, then started`, started: true };
    return { ok: true, state: on.state, message: `${target} was fenced (off confirmed) but did not start again: ${on.message}`, started: false };
  }

  /** Re-reads the state until `done` holds, verifyMs passes or the request gives up; returns the last state. */
  private async waitFor(target: string, steps: string[], done: (s: DomainState) => boolean, signal: AbortSignal | undefined): Promise<DomainState> {
    const deadline = performance.now() + this.options.verifyMs;
    let s = await this.read(target, steps, signal);
    while (!done(s) && performance.now() < deadline && !signal?.aborted) {
      try {
        await sleep(this.options.pollMs, undefined, signal ? { signal } : {});
      } catch {
        break; // aborted while pausing
      }
      s = await this.read(target, steps, signal);
    }
    return s;
  }
}

type Outcome = Pick<FenceResult, 'ok' | 'state' | 'message' | 'started' | 'notFound' | 'busy' | 'dropped'>;
