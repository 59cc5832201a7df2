// Long-lived interactive virsh processes, one libvirt connection each, so a
// state read costs about 1 ms instead of a process and a connection (~20-70 ms).
// Measured against @unraid/libvirt's native bindings (issue 12 note): as fast,
// but the native module needs a compiler to install, never reconnects after a
// libvirtd restart, and a call into a hung libvirtd cannot be cancelled; a
// virsh session reconnects by itself and a stuck one is a process we kill.
//
// Framing: each command line is followed by `echo --err MARK` and `echo MARK`
// on lines of their own, so each stream is cut at its own marker and whatever
// came before belongs to that command. Every word is single-quoted; names have
// passed checkDomainName (no quote, space, `;`, `#`, `\`, no leading `-`), so
// virsh's parser reads each as one literal word.
//
// A session is used once it has answered a first probe (the markers alone).
// One that ends or stays silent before that (a `command:` wrapper that is not
// interactive, or virsh that cannot connect: it exits at start then) runs that
// call as its own process, and the pool starts no session for a while.
import { execa, type ResultPromise } from 'execa';
import { abortReason } from '../abort.js';
import { run, ToolstackError, type CallOptions, type RunResult } from './toolstack.js';

/** Notices libvirt prints on its own when the daemon goes and comes back: not a command's failure. */
const NOTICE = /^error: (Disconnected from \S+ due to .*|Reconnected to the hypervisor)$/;
/** The prompt and the echo of our own input (readline echoes both on a pipe). */
const ECHO = /^virsh [#$>] /;
/** A session idle this long is ended; the next call starts one (~15 ms). */
const IDLE_MS = 60_000;
/** A session must answer its probe within this (never more than half a call's time; it starts in ~15 ms). */
const START_MS = 5_000;
/** After a session failed to start, calls run as processes this long, doubling up to an hour while starts keep failing. */
const RETRY_MS = 60_000;
const RETRY_MAX_MS = 3_600_000;

interface Pending {
  mark: string;
  errMark: string;
  resolve: (r: RunResult) => void;
  reject: (e: Error) => void;
}

class Session {
  private out = '';
  private err = '';
  private n = 0;
  private pending: Pending | undefined;
  private idle: NodeJS.Timeout | undefined;
  dead = false;
  /** Its process has exited: known at once, before its pipes close and `dead` is set. */
  private exited = false;
  /** Taken by a call of the pool, from its pick to its answer. */
  inUse = false;
  readonly child: ResultPromise;
  /** Settles when the session answered its probe: resolved, or rejected with why it did not. */
  readonly ready: Promise<RunResult>;

  constructor(command: string, uri: string, private readonly onDead: (s: Session) => void) {
    this.child = execa(command, ['-q', '-c', uri], {
      buffer: false,
      reject: false,
      stdin: 'pipe',
      env: { LC_ALL: 'C', LANG: 'C', INPUTRC: '/dev/null', TERM: 'dumb' },
      extendEnv: true,
    });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.out += d;
      this.settle();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.err += d;
      this.settle();
    });
    this.child.stdin?.on('error', () => undefined);
    this.child.once('exit', () => void (this.exited = true));
    void this.child.then((r) => this.die(new Error(`virsh session ${r.signal ? `killed by ${r.signal}` : `ended (exit ${r.exitCode})`}: ${this.err.trim().split(`\n`).at(-1) ?? ``}`)));
    this.ready = this.call([]);
    this.ready.catch(() => undefined);
  }

  get busy(): boolean {
    return this.inUse || this.pending !== undefined;
  }

  /** Free for a call: idle and alive. */
  get free(): boolean {
    return !this.busy && !this.dead && !this.exited;
  }

  /** One command (none: the markers alone, a probe); rejects when the session dies under it. Timeouts and aborts are the pool's. */
  call(words: string[]): Promise<RunResult> {
    if (this.dead) return Promise.reject(new Error('virsh session is gone'));
    clearTimeout(this.idle);
    this.hold(true);
    const id = `FBM-${process.pid}-${++this.n}-`;
    // The quotes split the marker in the echoed input, so only virsh's own output matches it.
    const mark = `${id}END`;
    return new Promise<RunResult>((resolve, reject) => {
      this.pending = { mark, errMark: `error: ${mark}\n`, resolve, reject };
      const line = words.length ? `${words.map((w) => `'${w}'`).join(' ')}\n` : '';
      this.child.stdin?.write(`${line}echo --err '${id}'END\necho '${id}'END\n`);
    });
  }

  private settle(): void {
    const p = this.pending;
    if (!p) return;
    const o = this.out.indexOf(p.mark);
    const e = this.err.indexOf(p.errMark);
    if (o < 0 || e < 0) return;
    const stdout = this.out.slice(0, o).split('\n').filter((l) => !ECHO.test(l)).join('\n').trim();
    const stderr = this.err.slice(0, e).split('\n').filter((l) => !NOTICE.test(l)).join('\n').trim();
    this.out = this.out.slice(o + p.mark.length);
    this.err = this.err.slice(e + p.errMark.length);
    this.pending = undefined;
    // Idle: the session may not keep a stopping process alive, and ends after a while.
    this.hold(false);
    this.idle = setTimeout(() => this.end(), IDLE_MS).unref();
    p.resolve({ exitCode: /^error: /m.test(stderr) ? 1 : 0, stdout, stderr });
  }

  /** Whether the session's process and pipes keep the event loop alive (only while a call runs). */
  private hold(on: boolean): void {
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr] as ({ ref?: () => void; unref?: () => void } | null)[]) {
      if (on) s?.ref?.();
      else s?.unref?.();
    }
    const c = this.child as unknown as { ref: () => void; unref: () => void };
    if (on) c.ref();
    else c.unref();
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.idle);
    this.onDead(this);
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }

  /** Ends the process: quietly when idle, at once (SIGKILL) when `force`. */
  end(force = false): void {
    if (force) this.child.kill('SIGKILL');
    else this.child.stdin?.end();
    this.die(new Error('virsh session closed'));
  }
}

/**
 * Up to `max` sessions, one command each at a time; when all are busy (a fence
 * storm beyond `max` domains) a call runs as its own virsh process, as before.
 */
export class VirshSessions {
  private readonly sessions = new Set<Session>();
  /** No session is started before this (performance.now()), after one failed to start. */
  private retryAt = 0;
  private retryMs = RETRY_MS;
  /** Why the last session failed to start, while calls run as processes because of it. */
  fallback: string | undefined;

  constructor(
    private readonly command: string,
    private readonly uri: string,
    private readonly max = 8,
  ) {}

  async run(words: string[], timeoutMs: number, o: CallOptions = {}): Promise<RunResult> {
    const argv = [this.command, '--quiet', '-c', this.uri, ...words];
    if (o.signal?.aborted) throw new ToolstackError(argv, `not run: ${abortReason(o.signal)}`);
    let s = [...this.sessions].find((x) => x.free);
    if (!s && this.sessions.size < this.max && performance.now() >= this.retryAt) {
      s = new Session(this.command, this.uri, (x) => this.sessions.delete(x));
      this.sessions.add(s);
      s.inUse = true;
      const why = await started(s, Math.min(START_MS, timeoutMs / 2), o.signal);
      if (why !== undefined) {
        s.end(true);
        if (o.signal?.aborted) throw new ToolstackError(argv, `killed: ${abortReason(o.signal)}`);
        this.fallback = why;
        this.retryAt = performance.now() + this.retryMs;
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
        // The call keeps its whole bound as a process: a failed start adds at
        // most half of it, once per retry period, and the request's deadline still holds.
        return run(argv, timeoutMs, o);
      }
      this.fallback = undefined;
      this.retryMs = RETRY_MS;
    }
    if (!s) return run(argv, timeoutMs, o);
    s.inUse = true;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    // A call that runs too long or is given up kills its session, as a spawned child would be killed.
    const stop = new Promise<never>((_, reject) => {
      // Rejected before the kill, so the caller hears why, not "session closed".
      timer = setTimeout(() => {
        reject(new ToolstackError(argv, `timed out after ${timeoutMs} ms (killed)`));
        s.end(true);
      }, timeoutMs);
      onAbort = () => {
        reject(new ToolstackError(argv, `killed: ${abortReason(o.signal)}`));
        s.end(true);
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([s.call(words), stop]);
    } catch (err) {
      if (err instanceof ToolstackError) throw err;
      throw new ToolstackError(argv, (err as Error).message);
    } finally {
      s.inUse = false;
      clearTimeout(timer);
      if (onAbort) o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Ends every session (the daemon is stopping). */
  close(): void {
    for (const s of this.sessions) s.end();
    this.sessions.clear();
  }
}

/** Undefined once `s` answered its probe; else why not (it ended, stayed silent `ms`, or the call was given up). */
async function started(s: Session, ms: number, signal: AbortSignal | undefined): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      s.ready.then(
        () => undefined,
        (e: Error) => e.message,
      ),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`virsh session did not answer within ${ms} ms of its start`), ms);
        onAbort = () => resolve('call given up while the virsh session started');
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
