// Installs the bundled guest plugin where cluster-glue and Pacemaker look for
// it (its own --install), and runs it through the real clients.
import { execa } from 'execa';
import { existsSync, rmSync } from 'node:fs';
import { projectPath } from '../common/paths.js';
import type { Daemon } from './broker-daemon.js';

export const FENCE_AGENT = '/usr/sbin/fence_broker';
export const EXTERNAL = '/usr/lib/stonith/plugins/external/fence-broker';

/** Why the real clients cannot run here, or undefined. */
export async function clientsMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'installing the plugin into /usr needs root';
  for (const bin of ['stonith', 'fence_legacy', 'xmllint', 'ssh']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs it)`;
  }
  return undefined;
}

export async function installPlugin(): Promise<void> {
  const r = await execa(projectPath('plugin', 'dist', 'fence_broker'), ['--install'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`fence_broker --install: ${r.stderr}`);
}

export function uninstallPlugin(): void {
  for (const f of [FENCE_AGENT, EXTERNAL]) if (existsSync(f)) rmSync(f);
}

/** Plugin parameters for a node of the daemon. */
export const params = (d: Daemon, node: string, fingerprint = d.fingerprint): Record<string, string> => ({
  ip: `127.0.0.1:${d.port}`,
  identity_file: d.key(node),
  host_key_fingerprint: fingerprint,
  broker_timeout: '60',
  login_timeout: '30',
});

export async function stonith(p: Record<string, string>, args: string[]) {
  const r = await execa('stonith', ['-t', 'external/fence-broker', ...Object.entries(p).map(([k, v]) => `${k}=${v}`), ...args], { reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function fenceAgent(p: Record<string, string>, extra: Record<string, string>) {
  const input = Object.entries({ ...p, ...extra }).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
  const r = await execa(FENCE_AGENT, [], { input, reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function fenceLegacy(p: Record<string, string>, extra: Record<string, string>) {
  const input = Object.entries({ plugin: 'external/fence-broker', ...p, ...extra }).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
  const r = await execa('fence_legacy', [], { input, reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}
