// Shared test helpers: temp folders, real CLI runs, fresh SSH keys.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectPath } from '../common/paths.js';
import { generateEd25519 } from '../broker/identity/keygen.js';

export const tempDir = (prefix = 'fb-test-'): string => mkdtempSync(join(tmpdir(), prefix));

export function writeTemp(name: string, text: string): string {
  const file = join(tempDir(), name);
  writeFileSync(file, text);
  return file;
}

/** Whether a process with this pid exists (signal 0 sends nothing). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const newPublicKey = (comment = 'test'): string => generateEd25519(comment).public;

export async function fencectl(args: string[]) {
  return execa('node', [projectPath('dist', 'broker', 'fencectl.js'), ...args], { reject: false, cwd: projectPath() });
}

export async function fenceBroker(args: string[]) {
  return execa('node', [projectPath('dist', 'broker', 'main.js'), ...args], { reject: false, cwd: projectPath() });
}

/**
 * Waits for an event the test cannot subscribe to (a line in a file another
 * process writes, a slot the daemon frees): re-checks every 10 ms, after
 * `attempt` if given, and fails after a generous bound.
 */
export async function until(what: string, check: () => boolean, timeoutMs = 60_000, attempt?: () => Promise<void>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (attempt) await attempt();
    if (check()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * `p`, or a failure naming `what` (and whatever `context()` says then) once a
 * generous bound passes: a step that should finish but hangs fails the test
 * with the state it was in, instead of stalling the whole suite.
 */
export function within<T>(what: string, p: Promise<T>, timeoutMs = 120_000, context: () => string = () => ''): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${timeoutMs} ms. ${context()}`)), timeoutMs);
  });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

/**
 * Runs every cleanup step in order, each even when one before it failed (a
 * leaked daemon or namespace outlives the test), then throws the first failure.
 */
export async function cleanup(...steps: (() => Promise<unknown> | unknown)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}
