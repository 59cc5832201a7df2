// The fence_virt door as the daemon runs it (broker.fence_virt): its keys,
// loaded and checked with the config on start and on every reload, the door
// and its listeners, and the serial channels (found over libvirt, served with
// the identity their domain proves). main.ts starts it beside the SSH door.
import type { Logger } from 'pino';
import type { Audit, RefusalRecord } from '../../audit.js';
import type { Broker } from '../../broker.js';
import { ConfigError } from '../../config/errors.js';
import { locateIn } from '../../config/load.js';
import type { Config, FenceVirtChannelsConfig } from '../../config/types.js';
import type { Fencer } from '../../fencer.js';
import { ChannelDiscovery } from './channels.js';
import { channelPeer, doorName, FenceVirtDoor, SERIAL_DOOR, type ChannelNode } from './door.js';
import { SerialChannels } from './serial.js';
import type { DoorStatus } from '../../status.js';
import { KeyProblem, loadKeyRing, type KeyEntry } from './keys.js';
import { startFenceVirtTcp, type FenceVirtTcp } from './tcp.js';

/** fence_virtd's replay history window; also the unverified allowance's. */
export const WINDOW_MS = 10_000;

/** The keys of `config`'s nodes (none when the door is off); a problem is a ConfigError located at key_dir. */
export function loadFenceVirtKeys(config: Config): KeyEntry[] {
  const fv = config.broker.fenceVirt;
  // Off, or channels alone (the crosscheck asks key_dir of listen and multicast).
  if (!fv || fv.keyDir === undefined) return [];
  try {
    return loadKeyRing(config, fv.keyDir);
  } catch (err) {
    if (!(err instanceof KeyProblem)) throw err;
    throw new ConfigError(err.problems.map((p) => locateIn(config.file, ['broker', 'fence_virt', 'key_dir'], `broker.fence_virt.key_dir: ${p}`)), { cause: err });
  }
}

const hostPort = (a: { host: string; port: number }): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

/**
 * The node whose domain `domain` is, in `config`: the identity a channel of
 * that domain proves. `why` when no node's domain it is, or two nodes name it
 * (then neither is chosen).
 */
export function channelOwner(config: Pick<Config, 'clusters'>, domain: string): ChannelNode | { why: string } {
  const found: ChannelNode[] = [];
  for (const c of Object.values(config.clusters)) {
    for (const n of Object.values(c.nodes)) {
      if (n.domain === domain) found.push({ identity: { kind: 'node', cluster: c.name, node: n.name, domain, fingerprint: channelPeer(domain) } });
    }
  }
  if (found.length === 1) return found[0] as ChannelNode;
  if (found.length === 0) return { why: 'no node of clusters.yaml has this domain' };
  return { why: `${found.length} nodes name this domain (${found.map((f) => `${f.identity.cluster}/${f.identity.node}`).join(', ')}); the channel proves none of them` };
}

/** The serial channels and their discovery, as one unit the reload replaces. */
export interface RunningChannels {
  config: FenceVirtChannelsConfig;
  channels: SerialChannels;
  discovery: ChannelDiscovery;
  close(): Promise<void>;
}

/** Starts discovery over libvirt (the virsh toolstack's uri and command) and the channel connections. */
export async function startChannels(o: {
  config: Config;
  door: FenceVirtDoor;
  audit: (r: RefusalRecord) => void;
  log: Logger;
}): Promise<RunningChannels | undefined> {
  const fv = o.config.broker.fenceVirt;
  const ch = fv?.channels;
  if (!fv || !ch) return undefined;
  const ts = o.config.broker.toolstack;
  // The crosscheck refuses channels with any other toolstack; said again here, where it matters.
  if (ts.type !== 'virsh') throw new Error(`fence_virt channels need the virsh toolstack (libvirt's domain XML); toolstack is ${ts.type}`);
  const channels = new SerialChannels({
    serve: (c, gone) => o.door.serveChannel(c, gone),
    dir: ch.dir,
    readTimeoutMs: fv.readTimeoutMs,
    requestsPerSecond: ch.requestsPerSecond,
    burst: ch.burst,
    audit: o.audit,
    log: o.log,
  });
  const discovery = new ChannelDiscovery({
    uri: ts.uri,
    ...(ts.command === undefined ? {} : { command: ts.command }),
    dir: ch.dir,
    mode: ch.mode,
    rescanMs: ch.rescanMs,
    commandTimeoutMs: o.config.broker.timeouts.commandMs,
    added: (domain, path) => {
      o.log.info({ domain, channel: path }, `fence_virt/serial: ${domain}'s channel is ${path}`);
      channels.add(domain, path);
    },
    removed: (domain) => {
      o.log.info({ domain }, `fence_virt/serial: ${domain} is not running; its channel is dropped`);
      channels.remove(domain);
    },
    log: o.log,
  });
  await discovery.start();
  return {
    config: ch,
    channels,
    discovery,
    close: async () => {
      await discovery.close();
      channels.close();
    },
  };
}

export interface RunningFenceVirt {
  door: FenceVirtDoor;
  tcp: FenceVirtTcp;
  /** The serial channels; undefined: not configured. */
  serial(): RunningChannels | undefined;
  /** After a reload: a change to broker.fence_virt.channels restarts discovery and the channels. */
  reload(next: Config): Promise<void>;
  /** What the ready line says. */
  describe(): Record<string, unknown>;
  /** fencectl status: each transport, where it listens and its connections. */
  report(): DoorStatus[];
  close(): Promise<void>;
}

export async function startFenceVirt(o: {
  config: Config;
  keys: () => readonly KeyEntry[];
  broker: Broker;
  fencer: Fencer;
  audit: Audit;
  log: Logger;
  /** The config now (swapped on reload): whose node a channel's domain is. Default: `config`. */
  current?: () => Config;
}): Promise<RunningFenceVirt | undefined> {
  const fv = o.config.broker.fenceVirt;
  if (!fv) return undefined;
  const current = o.current ?? (() => o.config);
  const door = new FenceVirtDoor({
    channelOwner: (domain) => channelOwner(current(), domain),
    keys: o.keys,
    handle: (who, peer, command, ctx) => o.broker.handle(who, peer, command, ctx),
    hostHas: (domain) => o.fencer.has(domain),
    audit: (r) => o.audit.refusedRequest(r),
    minHash: fv.hash,
    challengeHash: fv.challengeHash,
    exchangeTimeoutMs: fv.readTimeoutMs,
    unverifiedPerSource: fv.unverifiedPerSource,
    unverifiedTotal: fv.unverifiedTotal,
    windowMs: WINDOW_MS,
    log: o.log,
  });
  let tcp: FenceVirtTcp;
  try {
    tcp = await startFenceVirtTcp({
      listen: fv.listen,
      door,
      limits: { maxConnections: fv.maxConnections, maxPerSource: fv.maxConnectionsPerSource, readTimeoutMs: fv.readTimeoutMs },
      audit: (r) => o.audit.refusedRequest(r),
      refused: (r) => o.audit.refusal(r),
      log: o.log,
    });
  } catch (err) {
    door.close();
    throw err;
  }
  const audit = (r: RefusalRecord) => o.audit.refusedRequest(r);
  let serial: RunningChannels | undefined;
  try {
    serial = await startChannels({ config: o.config, door, audit, log: o.log });
  } catch (err) {
    await tcp.close();
    door.close();
    throw err;
  }
  // Reloads run one at a time: a second waits for the first's restart.
  let reloading: Promise<void> = Promise.resolve();
  return {
    door,
    tcp,
    serial: () => serial,
    reload: (next) => {
      reloading = reloading.then(async () => {
        const want = next.broker.fenceVirt?.channels;
        if (JSON.stringify(want) === JSON.stringify(serial?.config)) return;
        // The toolstack and the other fence_virt settings need a restart (main.ts says so); the channels do not.
        o.log.info({ channels: want ?? null }, 'fence_virt/serial: channels config changed; restarting discovery');
        await serial?.close();
        serial = undefined;
        if (!want) return;
        const cfg: Config = { ...o.config, broker: { ...o.config.broker, fenceVirt: { ...fv, channels: want } } };
        serial = await startChannels({ config: cfg, door, audit, log: o.log });
      });
      return reloading;
    },
    report: () => [
      // A door with channels alone has no TCP listener to report.
      ...(tcp.addresses.length > 0 || !serial ? [{ door: doorName('tcp'), listen: tcp.addresses.map(hostPort).join(' '), connections: { open: tcp.counts().connections } }] : []),
      ...(serial ? [{ door: SERIAL_DOOR, listen: serial.config.dir, connections: serial.channels.counts() }] : []),
    ],
    describe: () => ({
      tcp: tcp.addresses.map(hostPort),
      keys: o.keys().length,
      hash: fv.hash,
      challenge_hash: fv.challengeHash,
      ...(serial ? { channels: { dir: serial.config.dir, mode: serial.config.mode, found: serial.channels.counts().known } } : {}),
    }),
    close: async () => {
      await serial?.close();
      await tcp.close();
      door.close();
    },
  };
}
