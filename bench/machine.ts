// What a reader needs to weigh the figures: the machine, its load when the run
// started, and the version of every component measured. Read-only commands
// only (git with --no-optional-locks: no index refresh is written).
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { projectPath } from '../common/paths.js';
import { URI } from '../test/libvirt-host.js';

export interface Machine {
  cpu: string;
  cores: number;
  memGiB: number;
  kernel: string;
  loadStart: string;
  versions: [string, string][];
}

const out = async (cmd: string, args: string[]): Promise<string> => {
  const r = await execa(cmd, args, { reject: false, env: { LC_ALL: 'C' }, cwd: projectPath(), timeout: 30_000 });
  return `${String(r.stdout)}\n${String(r.stderr)}`.trim();
};
const first = (text: string, re: RegExp): string => re.exec(text)?.[1] ?? '?';
const deb = async (pkg: string) => first(await out('dpkg-query', ['-W', '-f=${Version}', pkg]), /^(\S+)/);

export async function machine(): Promise<Machine> {
  const [load1, load5, load15] = loadavg().map((x) => x.toFixed(2));
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const virshVersion = await out('virsh', ['-c', URI, 'version']);
  const head = first(await out('git', ['--no-optional-locks', 'rev-parse', '--short=12', 'HEAD']), /^([0-9a-f]+)/);
  // Uncommitted changes, counted per top-level folder (another change may be under way while this runs).
  const changed = new Map<string, number>();
  for (const l of (await out('git', ['--no-optional-locks', 'status', '--porcelain', '--', 'broker', 'plugin', 'common', 'bench'])).split('\n')) {
    const path = /^[ MADRCU?!]{2} (\S+)/.exec(l)?.[1];
    if (path) changed.set(path.split('/')[0] as string, (changed.get(path.split('/')[0] as string) ?? 0) + 1);
  }
  const dirty = [...changed].map(([dir, n]) => `${dir}/ (${n} file${n > 1 ? 's' : ''})`).join(', ');
  return {
    cpu: first(cpuinfo, /model name\s*:\s*(.+)/),
    cores: cpus().length,
    memGiB: totalmem() / 2 ** 30,
    kernel: release(),
    loadStart: `${load1} / ${load5} / ${load15}`,
    versions: [
      ['fence-broker', `${head}${dirty ? ` + uncommitted changes in ${dirty}` : ''}`],
      ['Node.js', process.version],
      ['libvirt', `${first(virshVersion, /Using library: libvirt (\S+)/)} (Debian ${await deb('libvirt-daemon')})`],
      ['QEMU', `${first(virshVersion, /Running hypervisor: QEMU (\S+)/)} (Debian ${await deb('qemu-system-x86')}, TCG)`],
      ['fence-virt (fence_virt, fence_virtd)', `${first(await out('/usr/sbin/fence_virt', ['-V']), /fence_virt (\S+)/)} (Debian ${await deb('fence-virt')})`],
      ['fence-agents (fence_virsh)', `${first(await out('/usr/sbin/fence_virsh', ['-V']), /(\d+\.\d+\.\d+)/)} (Debian ${await deb('fence-agents')})`],
      ['OpenSSH', first(await out('ssh', ['-V']), /(OpenSSH_\S+)/).replace(/,$/, '')],
    ],
  };
}

export const loadNow = (): string => loadavg().map((x) => x.toFixed(2)).join(' / ');
