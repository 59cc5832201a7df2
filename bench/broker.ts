// fence-broker as the benchmarks run it: the real daemon (dist/broker/main.js,
// started by test/broker-daemon.ts on port 0 with generated keys) and the real
// guest plugin, one new process per operation as Pacemaker runs it.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNodeKey } from '../broker/doors/fence-virt/keys.js';
import { projectPath } from '../common/paths.js';
import { startDaemon, type Daemon } from '../test/broker-daemon.js';
import { URI } from '../test/libvirt-host.js';
import { runTimed, stdinOptions, type Timed } from './proc.js';

export const PLUGIN = projectPath('plugin', 'dist', 'fence_broker');
/** The cluster-glue faces: the Node bundle under its external name, and the POSIX sh plugin (run by /bin/sh). */
export const EXTERNAL = { node: projectPath('plugin', 'dist', 'external', 'fence-broker'), sh: projectPath('plugin', 'dist', 'external', 'fence-broker.sh') } as const;
const VIRSH_TOOLSTACK = `{ type: virsh, uri: "${URI}" }`;

export interface BenchBroker {
  daemon: Daemon;
  /** The key file of the node allowed to fence `domain`. */
  keyFor(domain: string): string;
  /** The fence_virt door: that node's fence_virt key, the TCP listener on loopback, the multicast group and port. */
  fenceVirt: { keyFor(domain: string): string; tcpPort: number; group: string; multicastPort: number };
}

/** The fence_virt door's multicast group in the benchmarks (fence_xvm's default). */
export const BENCH_GROUP = '225.0.0.12';

/**
 * One tenant cluster per real domain (bench0 … benchN): the cluster owns its
 * domain and the domain of its one member node, a name only in the config, so
 * every fence is of a peer and no fence race ever stops the next round.
 */
export async function startBenchBroker(domains: string[], fenceVirt: { bridge: string; multicastPort: number; serial?: { dir: string; guest: string } }): Promise<BenchBroker> {
  const clusters: Record<string, { domains: string[]; nodes: Record<string, string> }> = {};
  const nodeOf = new Map<string, string>();
  // The fence_virt door: one key per node, as fencectl keygen --fence-virt writes them.
  const keyDir = join(mkdtempSync(join(tmpdir(), 'fb-bench-fv-')), 'keys');
  const fvKeys = new Map<string, string>();
  domains.forEach((d, i) => {
    clusters[`bench${i}`] = { domains: [d, `bench${i}-self`], nodes: { [`bench${i}-n1`]: `bench${i}-self` } };
    nodeOf.set(d, `bench${i}-n1`);
    fvKeys.set(d, writeNodeKey(keyDir, `bench${i}`, `bench${i}-n1`, false).file);
  });
  // The serial channel: the real guest is a node of the first domain's cluster, proven by its channel alone.
  const serial = fenceVirt.serial;
  if (serial) {
    const first = clusters.bench0;
    if (!first) throw new Error('no bench cluster for the serial guest');
    first.domains.push(serial.guest);
    first.nodes['bench0-serial'] = serial.guest;
  }
  const daemon = await startDaemon({
    clusters,
    toolstack: VIRSH_TOOLSTACK,
    extraBroker: [
      '  fence_virt:',
      `    key_dir: ${keyDir}`,
      '    listen: ["127.0.0.1:0"]',
      `    multicast: { groups: [${BENCH_GROUP}], port: ${fenceVirt.multicastPort}, interface: ${fenceVirt.bridge} }`,
      ...(serial ? [`    channels: { dir: ${serial.dir} }`] : []),
    ],
  });
  const tcpPort = Number(/"fence_virt":\{"tcp":\["127\.0\.0\.1:(\d+)"/.exec(daemon.logTail(1_000_000))?.[1]);
  if (!(tcpPort > 0)) throw new Error(`no fence_virt TCP port in the broker's ready line: ${daemon.logTail(2000)}`);
  const owned = <T>(m: Map<string, T>, d: string): T => {
    const v = m.get(d);
    if (v === undefined) throw new Error(`no bench cluster owns ${d}`);
    return v;
  };
  return {
    daemon,
    keyFor: (d) => daemon.key(owned(nodeOf, d)),
    fenceVirt: { keyFor: (d) => owned(fvKeys, d), tcpPort, group: BENCH_GROUP, multicastPort: fenceVirt.multicastPort },
  };
}

/** The plugin's fence-agents face, options on stdin, as stonith-ng runs it. */
export function runPlugin(b: BenchBroker, action: string, domain: string, timeoutMs: number): Promise<Timed> {
  const input = stdinOptions({
    action,
    plug: domain,
    ip: `127.0.0.1:${b.daemon.port}`,
    identity_file: b.keyFor(domain),
    host_key_fingerprint: b.daemon.fingerprint,
    login_timeout: 30, // a busy 2-core machine: never fail a login that is merely slow
  });
  return runTimed(PLUGIN, [], { input, timeoutMs });
}

/**
 * A cluster-glue face's `status` (of the device: one `gethosts` request), its
 * parameters in the environment as cluster-glue passes them; the sh face pins
 * the host key through the daemon's known_hosts file, the Node face too.
 */
export function runExternal(b: BenchBroker, face: keyof typeof EXTERNAL, domain: string, timeoutMs: number): Promise<Timed> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ip: `127.0.0.1:${b.daemon.port}`,
    identity_file: b.keyFor(domain),
    host_key_fingerprint: b.daemon.fingerprint,
    known_hosts_file: b.daemon.knownHosts,
    login_timeout: '30',
  };
  return runTimed(EXTERNAL[face], ['status'], { timeoutMs, env });
}

/**
 * The broker's audit line of the last `action` on `domain` written since
 * `since` (epoch ms): its own time (`duration_ms`) and when it was written
 * (`time`, epoch ms), when that line is there.
 */
export function brokerLine(b: BenchBroker, action: string, domain: string, since: number): { durationMs: number; at: number } | undefined {
  const verb = action === 'reboot' ? 'reset' : action;
  const line = b.daemon
    .audit()
    .reverse()
    .find((l) => l.target === domain);
  const at = typeof line?.time === 'string' ? Date.parse(line.time) : NaN;
  if (!line || line.action !== verb || typeof line.duration_ms !== 'number' || !(at >= since)) return undefined;
  return { durationMs: line.duration_ms, at };
}

/** The broker's own time for the last request on `domain` (audit `duration_ms`), when its audit line is there. */
export function brokerMs(b: BenchBroker, action: string, domain: string): number | undefined {
  const verb = action === 'reboot' ? 'reset' : action;
  const line = b.daemon
    .audit()
    .reverse()
    .find((l) => l.target === domain);
  return line && line.action === verb && typeof line.duration_ms === 'number' ? line.duration_ms : undefined;
}

export interface FrontDoorTenancy {
  daemon: Daemon;
  /** Per client: its key, and the domain whose status it reads. */
  clients: { name: string; key: Buffer; target: string }[];
  /** Time from starting the daemon to its ready line, ms (config, keys and policy loaded). */
  startMs: number;
}

/**
 * `domains` domains in clusters of five, two member nodes (two keys) each:
 * `keys / 2` clusters. With `realDomains` (virsh), the first clusters own the
 * real domains and the clients read their status; the other names exist only
 * in the config. On the sim every domain exists, running.
 */
export async function startFrontDoorBroker(o: { domains: number; keys: number; toolstack: 'sim' | 'virsh'; realDomains: string[]; clients: number }): Promise<FrontDoorTenancy> {
  const clusterCount = Math.floor(o.keys / 2);
  const perCluster = Math.ceil(o.domains / clusterCount);
  const clusters: Record<string, { domains: string[]; nodes: Record<string, string> }> = {};
  const simDomains: Record<string, string> = {};
  for (let c = 0; c < clusterCount; c++) {
    const domains = Array.from({ length: perCluster }, (_, j) => `fd${c}-vm${j}`);
    if (o.toolstack === 'virsh' && c < o.realDomains.length) domains[0] = o.realDomains[c] as string;
    clusters[`fd${c}`] = { domains, nodes: { [`fd${c}-n0`]: domains[1] as string, [`fd${c}-n1`]: domains[2] as string } };
    for (const d of domains) simDomains[d] = 'running';
  }
  const t0 = performance.now();
  const daemon = await startDaemon({
    clusters,
    toolstack: o.toolstack === 'virsh' ? VIRSH_TOOLSTACK : undefined,
    ...(o.toolstack === 'sim' ? { simDomains } : {}),
  });
  const startMs = performance.now() - t0;
  // Clients spread over clusters (over the real domains' clusters on virsh) and over both nodes of each.
  const spreadOver = o.toolstack === 'virsh' ? o.realDomains.length : clusterCount;
  const clients = Array.from({ length: o.clients }, (_, i) => {
    const c = o.toolstack === 'virsh' ? i % spreadOver : Math.floor((i * spreadOver) / o.clients);
    const node = `fd${c}-n${Math.floor(i / spreadOver) % 2}`;
    return { name: node, key: readFileSync(daemon.key(node)), target: clusters[`fd${c}`]?.domains[0] as string };
  });
  return { daemon, clients, startMs };
}
