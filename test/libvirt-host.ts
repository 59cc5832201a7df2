// Real libvirt + QEMU for tests (docs/design.md §8): small TCG domains that boot
// into firmware, defined per test and removed afterwards. scripts/setup.sh
// (run by npm test) installs and starts libvirt when running as root.
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

export const URI = 'qemu:///system';

/** Why real libvirt cannot be used here, or undefined when it can. */
export async function libvirtMissing(): Promise<string | undefined> {
  const r = await execa('virsh', ['-c', URI, 'version'], { reject: false, env: { LC_ALL: 'C' } });
  if (r.failed) return `libvirt at ${URI} is not usable (${String(r.stderr || r.shortMessage).split('\n')[0] ?? ''}); run scripts/system-setup.sh as root`;
  return undefined;
}

let counter = 0;
/** A unique domain name for this test process. */
export const domainName = (tag: string): string => `fbt-${process.pid}-${tag}-${++counter}`;

const xml = (name: string, devices = ''): string => `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>${devices}</devices>
</domain>`;

export const virsh = (...args: string[]) => execa('virsh', ['-c', URI, ...args], { reject: false, env: { LC_ALL: 'C' } });

/** Removes test domains left behind by test processes that no longer run. */
export async function sweepStale(): Promise<void> {
  const names = (await virsh('list', '--all', '--name')).stdout.split('\n').map((l) => l.trim());
  for (const name of names) {
    const pid = /^fbt-(\d+)-/.exec(name)?.[1];
    if (!pid) continue;
    try {
      process.kill(Number(pid), 0);
    } catch {
      await removeDomain(name);
    }
  }
}

/**
 * Defines (and by default starts) a domain; `track` learns its name before it
 * starts. `devices`: more XML inside <devices> (say, serial sockets), given the name.
 */
export async function createDomain(tag: string, start = true, track: (name: string) => void = () => undefined, devices: (name: string) => string = () => ''): Promise<string> {
  const name = domainName(tag);
  track(name);
  const file = join(tempDir('fb-dom-'), `${name}.xml`);
  writeFileSync(file, xml(name, devices(name)));
  const r = await virsh('define', file);
  if (r.exitCode !== 0) throw new Error(`virsh define ${name}: ${r.stderr}`);
  if (start) {
    const s = await virsh('start', name);
    if (s.exitCode !== 0) throw new Error(`virsh start ${name}: ${s.stderr}`);
  }
  return name;
}

export async function removeDomain(name: string): Promise<void> {
  await virsh('destroy', name);
  await virsh('undefine', name);
}

/** The independent witness: `virsh domstate` run by the test, not by the fencer. */
export async function domstate(name: string): Promise<string> {
  const r = await virsh('domstate', name);
  return r.exitCode === 0 ? r.stdout.trim() : `error: ${r.stderr.trim()}`;
}

export async function domid(name: string): Promise<string> {
  return (await virsh('domid', name)).stdout.trim();
}
