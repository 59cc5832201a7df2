// broker.pid_file: the daemon's pid while it serves, so `fencectl reload` can
// signal it. A pid can be reused after a crash; a pid counts as the broker's
// only while /proc says that process runs fence-broker with --config, so a
// stale file never gets an unrelated process signalled or blocks a start.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** The command line of `pid` as its words, or undefined when no such process is visible. */
function commandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a running fence-broker daemon (node …main.js or fence-broker, with --config). */
export function isBroker(pid: number): boolean {
  const words = commandLine(pid);
  return words !== undefined && words.includes('--config') && words.some((w) => /(^|\/)(main\.js|fence-broker(\.c?js)?)$/.test(w));
}

/** The pid in `file` when it names a running broker; undefined when the file is missing or stale. */
export function livePid(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 && isBroker(pid) ? pid : undefined;
}

/**
 * Claims `file` for this process: refused while another live broker holds it
 * (two daemons on one config would both fence); a stale file is replaced.
 * Written aside and renamed, so a reader never sees half a pid.
 */
export function writePidFile(file: string): void {
  const other = livePid(file);
  if (other !== undefined && other !== process.pid) throw new Error(`pid file ${file}: fence-broker pid ${other} is already running with it`);
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

/** Removes `file` if it still names this process (a successor may have claimed it). */
export function removePidFile(file: string): void {
  try {
    if (Number(readFileSync(file, 'utf8').trim()) === process.pid) rmSync(file, { force: true });
  } catch {
    // Already gone: nothing to do.
  }
}
