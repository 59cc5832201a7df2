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
