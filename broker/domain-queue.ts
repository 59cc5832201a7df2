// The order of toolstack work on one domain (docs/design.md §3.7, §4). Fencing
// cannot be starved:
// - power actions (on, off, reset) of a domain run one at a time, in arrival
//   order, and never wait behind reads: a power action waits at most for the
//   one read already running, and reads arriving meanwhile wait for it;
// - reads (status) of a domain in flight at the same time share one toolstack
//   read, so a flood of them costs one call;
// - both queues are bounded, apart, so reads can never fill the power queue;
// - a request that gives up (deadline, client gone) leaves its queue at once
//   and never reaches the toolstack.
// Pure scheduling: no toolstack, no clock; the callers pass the work.
import { abortReason, unlessAborted } from './abort.js';

/** A bound was reached; nothing was done. */
export class Busy extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Busy';
  }
}

/** The request gave up (its signal fired) before its work reached the toolstack. */
export class Dropped extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Dropped';
  }
}

export interface QueueLimits {
  /** Reads of one domain waiting or running. */
  maxReads: number;
  /** Power actions of one domain waiting or running. */
  maxPower: number;
}

interface Lane {
  /** Power actions waiting or running. */
  power: number;
  /** Settles when every power action queued so far has finished (FIFO chain). */
  powerTail: Promise<void>;
  /** Readers waiting for power to drain. */
  idleWaiters: Set<() => void>;
  /** Reads waiting or running. */
  reads: number;
  /** The one shared read in flight. */
  read: Promise<unknown> | undefined;
}

/** `p`, unless `signal` fires first: then Dropped. `p` itself goes on. */
const unlessGone = <T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> => unlessAborted(p, signal, (why) => new Dropped(why));

const settled = (p: Promise<unknown>): Promise<void> =>
  p.then(
    () => undefined,
    () => undefined,
  );

export class DomainQueue {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly limits: QueueLimits) {}

  private lane(domain: string): Lane {
    let lane = this.lanes.get(domain);
    if (!lane) {
      lane = { power: 0, powerTail: Promise.resolve(), idleWaiters: new Set(), reads: 0, read: undefined };
      this.lanes.set(domain, lane);
    }
    return lane;
  }

  /** Memory stays flat: an idle lane is forgotten. */
  private release(domain: string, lane: Lane): void {
    if (lane.power === 0 && lane.reads === 0 && lane.read === undefined && this.lanes.get(domain) === lane) this.lanes.delete(domain);
  }

  /** Domains with queued or running work (for tests and diagnostics). */
  get activeDomains(): number {
    return this.lanes.size;
  }

  /** Work waiting or running, in all and on the busiest domain (against maxReads / maxPower), for the metrics. */
  depths(): { domains: number; reads: number; power: number; maxReads: number; maxPower: number } {
    const d = { domains: this.lanes.size, reads: 0, power: 0, maxReads: 0, maxPower: 0 };
    for (const lane of this.lanes.values()) {
      d.reads += lane.reads;
      d.power += lane.power;
      d.maxReads = Math.max(d.maxReads, lane.reads);
      d.maxPower = Math.max(d.maxPower, lane.power);
    }
    return d;
  }

  /**
   * A read of `domain`. Joins the read in flight if there is one; otherwise
   * waits until no power action is queued, then runs `read` once for every
   * reader that arrives while it runs. `read` gets no per-request signal: it is
   * shared, and one reader leaving must not cut it short for the others.
   */
  async read<T>(domain: string, read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const lane = this.lane(domain);
    if (lane.reads >= this.limits.maxReads) {
      this.release(domain, lane);
      throw new Busy(`${lane.reads} reads of ${domain} already queued (max_reads_per_domain ${this.limits.maxReads})`);
    }
    lane.reads++;
    try {
      for (;;) {
        if (lane.read) return (await unlessGone(lane.read, signal)) as T;
        if (lane.power > 0) {
          let wake!: () => void;
          const idle = new Promise<void>((r) => lane.idleWaiters.add((wake = r)));
          try {
            await unlessGone(idle, signal);
          } finally {
            lane.idleWaiters.delete(wake);
          }
          continue;
        }
        if (signal?.aborted) throw new Dropped(abortReason(signal));
        const shared = read();
        lane.read = shared;
        void settled(shared).then(() => {
          if (lane.read === shared) lane.read = undefined;
          this.release(domain, lane);
        });
        return await unlessGone(shared, signal);
      }
    } finally {
      lane.reads--;
      this.release(domain, lane);
    }
  }

  /**
   * A power action on `domain`: after the power actions queued before it, and
   * after the one read already running (at most one toolstack call), alone.
   * `act` is not started once `signal` has fired.
   */
  async power<T>(domain: string, act: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const lane = this.lane(domain);
    if (lane.power >= this.limits.maxPower) {
      this.release(domain, lane);
      throw new Busy(`${lane.power} power actions on ${domain} already queued (max_power_per_domain ${this.limits.maxPower})`);
    }
    lane.power++;
    const before = lane.powerTail;
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    // The next one waits for everything before it and for this one, even if this one leaves early.
    lane.powerTail = before.then(() => mine);
    try {
      await unlessGone(before, signal);
      // No read starts while power is queued, so this is the one read in flight, if any.
      while (lane.read) await unlessGone(settled(lane.read), signal);
      if (signal?.aborted) throw new Dropped(abortReason(signal));
      return await act();
    } finally {
      done();
      lane.power--;
      if (lane.power === 0) {
        for (const wake of lane.idleWaiters) wake();
        lane.idleWaiters.clear();
      }
      this.release(domain, lane);
    }
  }
}
