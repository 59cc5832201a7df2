// The toolstack edge: the one interface each hypervisor's executor implements
// (xl, virsh, sim), and the shared way they run commands. Executors only read
// and act; what counts as "fenced" is decided by the fencer (broker/fencer.ts).
import { abortReason } from '../abort.js';
import { execa } from 'execa';
import { nameProblem, reservedDomainProblem } from '../../common/names.js';

/** What the toolstack says about one domain, normalised. */
export type Observed = 'running' | 'stopped' | 'missing' | 'unknown';

export interface DomainState {
  name: string;
  observed: Observed;
  /** The toolstack's own words ("shut off (destroyed)", "-b----"), for messages and audit. */
  raw: string;
  /**
   * Missing, yet `start` can bring it up (xl keeps no record of stopped domains,
   * only their config files). It is still not proof of off: it may run elsewhere.
   */
  startable?: boolean;
}

/** Per call: aborting the signal kills the command (the request's deadline passed or its client left). */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface Toolstack {
  /** "xl", "virsh qemu:///system", "sim (simulated host)". */
  readonly describe: string;
  /** Every domain the host knows, with its state. */
  list(o?: CallOptions): Promise<DomainState[]>;
  /** One domain's state; `missing` only when the host positively does not have it. */
  state(name: string, o?: CallOptions): Promise<DomainState>;
  /** Hard power-off (never graceful). May throw; the fencer re-reads the state either way. */
  destroy(name: string, o?: CallOptions): Promise<void>;
  /** Power on. May throw; the fencer re-reads the state either way. */
  start(name: string, o?: CallOptions): Promise<void>;
  /** Releases what the toolstack keeps open between calls (virsh sessions); the daemon calls it on stop. */
  close?(): void;
}

/** A failed toolstack call: which command, how it ended, what it said. */
export class ToolstackError extends Error {
  constructor(
    readonly argv: string[],
    readonly detail: string,
  ) {
    super(`${argv.join(' ')}: ${detail}`);
    this.name = 'ToolstackError';
  }
}

/**
 * Names reach a toolstack argv only through this check: the project's name
 * pattern, and nothing a toolstack reads as something else (a domain id, a
 * UUID, the control domain).
 */
export function checkDomainName(name: string): string {
  const problem = nameProblem(name) ?? reservedDomainProblem(name);
  if (problem) throw new ToolstackError(['(refused)', name.slice(0, 80)], `invalid domain name: ${problem}`);
  return name;
}

export interface RunResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

/**
 * Runs one toolstack command: argv array (never a shell), C locale, a timeout
 * after which the child is killed (SIGKILL after a grace period), and the
 * caller's abort signal, which kills it too. A timeout, an abort or a signal
 * is a ToolstackError; a non-zero exit is returned for the caller to weigh
 * (exit codes are never trusted alone).
 */
export async function run(argv: string[], timeoutMs: number, o: CallOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv as [string, ...string[]];
  if (o.signal?.aborted) throw new ToolstackError(argv, `not run: ${abortReason(o.signal)}`);
  const r = await execa(file, args, {
    ...(o.signal ? { cancelSignal: o.signal } : {}),
    shell: false,
    reject: false,
    timeout: timeoutMs,
    forceKillAfterDelay: 1_000,
    env: { LC_ALL: 'C', LANG: 'C' },
    extendEnv: true,
    stdin: 'ignore',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (r.timedOut) throw new ToolstackError(argv, `timed out after ${timeoutMs} ms (killed)`);
  if (r.isCanceled) throw new ToolstackError(argv, `killed: ${abortReason(o.signal)}`);
  if (r.failed && r.exitCode === undefined) {
    throw new ToolstackError(argv, r.signal ? `killed by ${r.signal}` : (r.originalMessage || r.shortMessage || "failed to run"));
  }
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export const firstLine = (s: string): string => s.trim().split('\n')[0]?.slice(0, 200) ?? '';
