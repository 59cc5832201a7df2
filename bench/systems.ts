// The systems compared, each doing one operation on one domain as a new
// process (or processes) with its options the way a cluster manager passes
// them: fence-agents options on stdin for the three agents, argv for virsh.
import { URI } from '../test/libvirt-host.js';
import { PLUGIN, runExternal, runPlugin, type BenchBroker } from './broker.js';
import type { FenceVirtd, FenceVirtdMulticast, Sshd } from './peers.js';
import { failure, runTimed, stdinOptions, type Timed } from './proc.js';

export type Op = 'off' | 'reboot' | 'status';

export interface System {
  name: string;
  /** The operations it takes part in. */
  ops: Op[];
  run(op: Op, domain: string, timeoutMs: number): Promise<Timed>;
}

export interface Peers {
  broker: BenchBroker;
  virtd: FenceVirtd;
  /** fence_virtd with the multicast listener, on the guests' bridge. */
  virtdMulticast: FenceVirtdMulticast;
  sshd: Sshd;
  /** The guest (network namespace on the bridge) of the tenant that owns `domain`: fence_xvm runs there. */
  guestOf(domain: string): string;
  /** Real guests with no network device: /dev/ttyS1 is the channel, to fence-broker in one, to fence_virtd in the other. */
  serialGuest: SerialGuest;
  serialVirtdGuest: SerialGuest;
}

interface SerialGuest {
  run(cmd: string, timeoutMs: number): Promise<{ out: string; rc: number }>;
}

/**
 * fence_virt inside the real guest on one of its serial ports, timed from the
 * host around the console round trip (the same for both peers).
 */
async function fenceVirtSerial(guest: SerialGuest, op: Op, domain: string, timeoutMs: number): Promise<Timed> {
  const t0 = performance.now();
  try {
    const r = await guest.run(`fence_virt -D /dev/ttyS1 -o ${op} -n ${domain} -t 60`, timeoutMs);
    return { ms: performance.now() - t0, exitCode: r.rc, signal: null, stdout: r.out, stderr: '', timedOut: false };
  } catch (err) {
    return { ms: performance.now() - t0, exitCode: null, signal: null, stdout: '', stderr: (err as Error).message, timedOut: true };
  }
}

/** fence_xvm in a guest's namespace, options on stdin as Pacemaker's fencer passes them. */
const fenceXvm = (netns: string, options: Record<string, string | number>, timeoutMs: number) =>
  runTimed('ip', ['netns', 'exec', netns, '/usr/sbin/fence_xvm'], { input: stdinOptions({ ...options, timeout: 60 }), timeoutMs });

const virsh = (args: string[], timeoutMs: number) => runTimed('virsh', ['-c', URI, ...args], { timeoutMs, env: { ...process.env, LC_ALL: 'C' } });

/** Two runs in a row as one timed operation (the raw reboot: destroy, then start). */
async function chain(first: () => Promise<Timed>, second: () => Promise<Timed>): Promise<Timed> {
  const a = await first();
  if (failure('', a)) return a;
  const b = await second();
  return { ...b, ms: a.ms + b.ms, stdout: a.stdout + b.stdout, stderr: a.stderr + b.stderr };
}

export function systems(p: Peers): System[] {
  return [
    { name: 'fence_broker', ops: ['off', 'reboot', 'status'], run: (op, d, t) => runPlugin(p.broker, op, d, t) },
    {
      name: 'fence_virt',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) =>
        runTimed('/usr/sbin/fence_virt', [], {
          input: stdinOptions({ action: op, plug: d, ipaddr: '127.0.0.1', ipport: p.virtd.port, key_file: p.virtd.keyFile, timeout: 60 }),
          timeoutMs: t,
        }),
    },
    // The stock fence_virt clients against fence-broker's fence_virt door: TCP on loopback, and fence_xvm
    // multicast from a guest namespace (against fence_virtd's multicast listener on the same bridge too).
    {
      name: 'fence_virt -T → fence-broker',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) =>
        runTimed('/usr/sbin/fence_virt', [], {
          input: stdinOptions({ action: op, plug: d, ipaddr: '127.0.0.1', ipport: p.broker.fenceVirt.tcpPort, key_file: p.broker.fenceVirt.keyFor(d), timeout: 60 }),
          timeoutMs: t,
        }),
    },
    {
      name: 'fence_xvm → fence_virtd',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) => fenceXvm(p.guestOf(d), { action: op, plug: d, multicast_address: p.virtdMulticast.group, ipport: p.virtdMulticast.port, key_file: p.virtdMulticast.keyFile }, t),
    },
    {
      name: 'fence_xvm → fence-broker',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) => fenceXvm(p.guestOf(d), { action: op, plug: d, multicast_address: p.broker.fenceVirt.group, ipport: p.broker.fenceVirt.multicastPort, key_file: p.broker.fenceVirt.keyFor(d) }, t),
    },
    // fence_virt's serial client in real guests with no network device (issue 20): one guest's ttyS1
    // reaches fence-broker's channel door, the other's fence_virtd's serial listener.
    { name: 'fence_virt -D → fence-broker', ops: ['off', 'reboot', 'status'], run: (op, d, t) => fenceVirtSerial(p.serialGuest, op, d, t) },
    { name: 'fence_virt -D → fence_virtd', ops: ['off', 'reboot', 'status'], run: (op, d, t) => fenceVirtSerial(p.serialVirtdGuest, op, d, t) },
    {
      name: 'fence_virsh',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) =>
        runTimed('/usr/sbin/fence_virsh', [], {
          input: stdinOptions({ action: op, plug: d, ip: '127.0.0.1', ipport: p.sshd.port, username: 'root', identity_file: p.sshd.clientKey, ssh_options: p.sshd.sshOptions, login_timeout: 30 }),
          timeoutMs: t,
        }),
    },
    {
      name: 'virsh (raw)',
      ops: ['off', 'reboot', 'status'],
      run: (op, d, t) => {
        if (op === 'off') return virsh(['destroy', d], t);
        if (op === 'reboot') return chain(() => virsh(['destroy', d], t), () => virsh(['start', d], t));
        return virsh(['domstate', d], t);
      },
    },
    // The cluster-glue faces' status (Heartbeat's; one gethosts request): the POSIX sh plugin over OpenSSH, and the Node bundle.
    { name: 'external/fence-broker status, sh', ops: ['status'], run: (_op, d, t) => runExternal(p.broker, 'sh', d, t) },
    { name: 'external/fence-broker status, Node', ops: ['status'], run: (_op, d, t) => runExternal(p.broker, 'node', d, t) },
    // Floors for status: a Node process doing nothing, and the plugin loading its bundle and exiting (--version).
    { name: 'node -e 0', ops: ['status'], run: (_op, _d, t) => runTimed(process.execPath, ['-e', '0'], { timeoutMs: t }) },
    { name: 'fence_broker --version', ops: ['status'], run: (_op, _d, t) => runTimed(PLUGIN, ['--version'], { timeoutMs: t }) },
  ];
}

/** What the raw virsh command is called in a table, per operation. */
export const rawLabel: Record<Op, string> = { off: 'virsh destroy', reboot: 'virsh destroy + start', status: 'virsh domstate' };
