// The benchmark's own time and its cleanup: one global deadline, every step
// bounded by what is left of it, and a cleanup (domains undefined, daemons
// killed, temp dirs removed) that runs on success, failure, SIGINT/SIGTERM and
// at the deadline.
import { killLiveRuns } from './proc.js';

export class Lifecycle {
  private readonly steps: { what: string; fn: () => unknown }[] = [];
  private readonly deadlineAt: number;
  private timer: NodeJS.Timeout | undefined;
  private cleaning: Promise<void> | undefined;
  /** What the benchmark is doing now, for the messages of a deadline or interrupt. */
  phase = 'starting';

  constructor(deadlineMs: number) {
    this.deadlineAt = performance.now() + deadlineMs;
    let stopping = false;
    const stop = (why: string, code: number) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`\nbench: ${why} during "${this.phase}"; cleaning up\n`);
      killLiveRuns();
      void this.cleanup().finally(() => process.exit(code));
    };
    // Kept registered (not once): execa's signal-exit re-raises a signal that no other listener
    // handles, which would kill this process before its cleanup ran.
    process.on('SIGINT', () => stop('interrupted (SIGINT)', 130));
    process.on('SIGTERM', () => stop('terminated (SIGTERM)', 143));
    this.timer = setTimeout(() => stop(`global deadline of ${Math.round(deadlineMs / 1000)} s passed`, 124), deadlineMs);
  }

  remainingMs(): number {
    return Math.max(0, this.deadlineAt - performance.now());
  }

  /** A bound for one step: `ms`, or less when the global deadline comes first. */
  boundMs(ms: number): number {
    return Math.max(1, Math.min(ms, this.remainingMs()));
  }

  /** `p`, or a rejection naming `what` after `ms` (capped by the global deadline). */
  within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
    const bound = this.boundMs(ms);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done after ${Math.round(bound)} ms (phase "${this.phase}")`)), bound);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  /** Registers a cleanup step; steps run last-registered first. */
  defer(what: string, fn: () => unknown): void {
    this.steps.push({ what, fn });
  }

  /** Runs every step once (each even when one before it failed); later calls wait for that one. */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      for (const { what, fn } of this.steps.reverse()) {
        try {
          await Promise.race([fn(), new Promise((_, reject) => setTimeout(() => reject(new Error('not done after 120 s')), 120_000).unref())]);
        } catch (err) {
          process.stderr.write(`bench: cleanup "${what}" failed: ${(err as Error).message}\n`);
        }
      }
    })();
    return this.cleaning;
  }

  /** The run is over: the deadline no longer applies. */
  end(): void {
    clearTimeout(this.timer);
  }
}

/** Resolves when `check` passes (a state no event reports, e.g. a daemon's socket), re-checked every `gapMs` until `timeoutMs`. */
export async function poll(what: string, check: () => Promise<boolean>, timeoutMs: number, gapMs = 50): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, gapMs));
  }
}
