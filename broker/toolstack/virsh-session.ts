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
import { execa, type ResultPromise } from 'execa';
import { abortReason } from '../abort.js';
import { run, ToolstackError, type CallOptions, type RunResult } from './toolstack.js';

/** Notices libvirt prints on its own when the daemon goes and comes back: not a command's failure. */
const NOTICE = /^error: (Disconnected from \S+ due to .*|Reconnected to the hypervisor)$/;
/** The prompt and the echo of our own input (readline echoes both on a pipe). */
const ECHO = /^virsh [#$>] /;
/** A session idle this long is ended; the next call starts one (~15 ms). */
const IDLE_MS = 60_000;

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
  readonly child: ResultPromise;

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
    void this.child.then((r) => this.die(new Error(`virsh session ${r.signal ? `killed by ${r.signal}` : `ended (exit ${r.exitCode})`}: ${this.err.trim().split(`\n`).at(-1) ?? ``}`)));
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** One command; rejects when the session dies under it. Timeouts and aborts are the pool's. */
  call(words: string[]): Promise<RunResult> {
    if (this.dead) return Promise.reject(new Error('virsh session is gone'));
    clearTimeout(this.idle);
    this.hold(true);
    const id = `FBM-${process.pid}-${++this.n}-`;
    // The quotes split the marker in the echoed input, so only virsh's own output matches it.
    const mark = `${id}END`;
    return new Promise<RunResult>((resolve, reject) => {
      this.pending = { mark, errMark: `error: ${mark}\n`, resolve, reject };
      this.child.stdin?.write(`${words.map((w) => `'${w}'`).join(' ')}\necho --err '${id}'END\necho '${id}'END\n`);
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

  constructor(
    private readonly command: string,
    private readonly uri: string,
    private readonly max = 8,
  ) {}

  async run(words: string[], timeoutMs: number, o: CallOptions = {}): Promise<RunResult> {
    const argv = [this.command, '--quiet', '-c', this.uri, ...words];
    if (o.signal?.aborted) throw new ToolstackError(argv, `not run: ${abortReason(o.signal)}`);
    let session = [...this.sessions].find((s) => !s.busy && !s.dead);
    if (!session && this.sessions.size < this.max) {
      session = new Session(this.command, this.uri, (s) => this.sessions.delete(s));
      this.sessions.add(session);
    }
    if (!session) return run(argv, timeoutMs, o);
    const s = session;
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
