// The bench's QEMU domains (test/libvirt-host.ts: small TCG domains named
// fbt-PID-…, so a test run sweeps them if this process dies without cleaning
// up), and putting them back in the state a round starts from, outside the
// timed part.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDomain, domstate, removeDomain, virsh } from '../test/libvirt-host.js';

const libvirtUp = async () => (await virsh('version')).exitCode === 0;

/** Waits (bounded) for libvirtd to answer: others may restart it while this runs. */
async function libvirtBack(timeoutMs = 30_000): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (await libvirtUp()) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

/** Defines and starts `count` domains; `track` learns each name before it is defined, for cleanup. */
export async function createBenchDomains(count: number, track: (name: string) => void): Promise<string[]> {
  const names: string[] = [];
  // One at a time: QEMU start-up on a busy 2-core machine is slow enough without contention.
  for (let i = 0; i < count; i++) {
    // A libvirtd restarted under us (end of file) is waited for and the domain tried again, twice at most.
    for (let attempt = 1; ; attempt++) {
      try {
        names.push(await createDomain(`bench${i}`, true, track));
        break;
      } catch (err) {
        if (attempt >= 3 || !(await libvirtBack())) throw err;
      }
    }
  }
  return names;
}

export { domstate };

/** Undefines the domains and removes the XML files createDomain left in fb-dom-* temp dirs. */
export async function removeBenchDomains(names: string[]): Promise<void> {
  // Checked gone, and tried again while libvirtd comes back from a restart (bounded).
  for (let attempt = 1; names.length; attempt++) {
    await Promise.all(names.map(removeDomain));
    const defined = new Set((await virsh('list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()));
    const left = (await libvirtUp()) ? names.filter((n) => defined.has(n)) : names;
    if (!left.length) break;
    if (attempt >= 3 || !(await libvirtBack())) throw new Error(`could not remove ${left.join(', ')}`);
  }
  for (const dir of readdirSync(tmpdir()).filter((d) => d.startsWith('fb-dom-'))) {
    if (names.some((n) => existsSync(join(tmpdir(), dir, `${n}.xml`)))) rmSync(join(tmpdir(), dir), { recursive: true, force: true });
  }
}

/**
 * Starts `name` if it is not running, and checks that it then is (once more
 * after a libvirtd restart). Resolves to whether it had to start it.
 */
export async function ensureRunning(name: string): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    if ((await domstate(name)) === 'running') return attempt > 1;
    const r = await virsh('start', name);
    const now = await domstate(name);
    if (now === 'running') return true;
    if (attempt >= 2 || (await libvirtUp()) || !(await libvirtBack())) {
      throw new Error(`cannot bring ${name} back to running for the next round (virsh start: exit ${r.exitCode} ${String(r.stderr).trim()}; state now ${now})`);
    }
  }
}

/** CPU time (user + system) of a domain's QEMU process so far, ms; undefined when it is not running. */
function qemuCpuMs(name: string): number | undefined {
  try {
    const pid = readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // USER_HZ 100
  } catch {
    return undefined;
  }
}

/**
 * Waits until the domains' QEMU processes are quiet: a TCG guest spends its
 * first ~250 ms after start booting its firmware (~130 ms of CPU each here),
 * and a system timed while 8 of them boot is timed against their CPU use, not
 * against a running guest's. Quiet: under 25 ms of CPU each in a 250 ms window.
 * Bounded: after `boundMs` the run goes on (guests that never settle load
 * every system alike).
 */
export async function settled(names: string[], boundMs = 10_000): Promise<void> {
  const end = performance.now() + boundMs;
  let last = names.map(qemuCpuMs);
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 250));
    const now = names.map(qemuCpuMs);
    const busy = now.some((c, i) => c !== undefined && last[i] !== undefined && c - (last[i] as number) >= 25);
    last = now;
    if (!busy) return;
  }
}
