// The fence_virt door as the daemon runs it (broker.fence_virt): its keys,
// loaded and checked with the config on start and on every reload, the door
// and its listeners. main.ts starts it beside the SSH door.
import type { Logger } from 'pino';
import type { Audit } from '../../audit.js';
import type { Broker } from '../../broker.js';
import { ConfigError } from '../../config/errors.js';
import { locateIn } from '../../config/load.js';
import type { Config } from '../../config/types.js';
import type { Fencer } from '../../fencer.js';
import { doorName, FenceVirtDoor } from './door.js';
import type { DoorStatus } from '../../status.js';
import { KeyProblem, loadKeyRing, type KeyEntry } from './keys.js';
import { startFenceVirtTcp, type FenceVirtTcp } from './tcp.js';

/** fence_virtd's replay history window; also the unverified allowance's. */
export const WINDOW_MS = 10_000;

/** The keys of `config`'s nodes (none when the door is off); a problem is a ConfigError located at key_dir. */
export function loadFenceVirtKeys(config: Config): KeyEntry[] {
  const fv = config.broker.fenceVirt;
  if (!fv) return [];
  try {
    return loadKeyRing(config, fv.keyDir);
  } catch (err) {
    if (!(err instanceof KeyProblem)) throw err;
    throw new ConfigError(err.problems.map((p) => locateIn(config.file, ['broker', 'fence_virt', 'key_dir'], `broker.fence_virt.key_dir: ${p}`)), { cause: err });
  }
}

const hostPort = (a: { host: string; port: number }): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

export interface RunningFenceVirt {
  door: FenceVirtDoor;
  tcp: FenceVirtTcp;
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
}): Promise<RunningFenceVirt | undefined> {
  const fv = o.config.broker.fenceVirt;
  if (!fv) return undefined;
  const door = new FenceVirtDoor({
    keys: o.keys,
    handle: (who, peer, command, ctx) => o.broker.handle(who, peer, command, ctx),
    hostHas: async (domain) => {
      const listed = await o.fencer.list([domain]);
      return listed.ok && listed.domains.includes(domain);
    },
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
  return {
    door,
    tcp,
    report: () => [{ door: doorName('tcp'), listen: tcp.addresses.map(hostPort).join(' '), connections: { open: tcp.counts().connections } }],
    describe: () => ({ tcp: tcp.addresses.map(hostPort), keys: o.keys().length, hash: fv.hash, challenge_hash: fv.challengeHash }),
    close: async () => {
      await tcp.close();
      door.close();
    },
  };
}
