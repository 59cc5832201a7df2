// Timed child processes for the benchmarks: spawn → close measured with
// performance.now (process start included, as a cluster manager pays it), each
// run bounded, each in its own process group so a timeout or an interrupt also
// ends what it started (fence_virsh's ssh, a plugin's children).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Timed {
  /** Wall time from just before spawn to the close of its output, ms. */
  ms: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const live = new Set<ChildProcess>();
let stopping = false;

/** Kills every timed run still going (its whole process group) and refuses new ones: the bench is cleaning up. */
export function killLiveRuns(): void {
  stopping = true;
  for (const c of live) killGroup(c);
}

export function killGroup(c: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, signal);
  } catch {
    try { c.kill(signal); } catch { /* already gone */ }
  }
}

/** Runs `cmd args`, `input` on stdin (closed after it), killed after `timeoutMs`. Never rejects on a failing exit. */
export function runTimed(cmd: string, args: string[], o: { input?: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Timed> {
  return new Promise((resolve, reject) => {
    if (stopping) return reject(new Error(`not running ${cmd}: the bench is cleaning up`));
    const t0 = performance.now();
    const child = spawn(cmd, args, { detached: true, stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, o.timeoutMs);
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdin.on('error', () => undefined); // a child that exits without reading its stdin
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.once('close', (exitCode, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      live.delete(child);
      resolve({ ms, exitCode, signal, stdout, stderr, timedOut });
    });
    child.stdin.end(o.input ?? '');
  });
}

/** What went wrong with a run, or undefined when it exited 0. */
export function failure(what: string, r: Timed): string | undefined {
  if (r.exitCode === 0 && !r.timedOut) return undefined;
  const why = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  const text = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-2).join(' | ').slice(0, 300);
  return `${what}: ${why}${text ? `: ${text}` : ''}`;
}

/** `options` as fence-agents read them on stdin: name=value lines. */
export const stdinOptions = (options: Record<string, string | number>): string =>
  Object.entries(options)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n') + '\n';

/**
 * A process as the bench names it: its pid and its start time (clock ticks
 * since boot, /proc/PID/stat's 22nd field), so that a checker can tell it from
 * a later process given the same pid once the pids wrap around.
 */
export function procLabel(pid: number): string {
  let start = '?';
  try {
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '?';
  } catch {
    /* gone already: the start stays unknown */
  }
  return `pid ${pid} (start ${start})`;
}
