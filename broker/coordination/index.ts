// The coordination the config asks for, and this broker's entry in the fleet
// view (published every few seconds under a lease, so a dead broker vanishes).
import { createHash } from 'node:crypto';
import type { Config } from '../config/types.js';
import { policyData } from '../policy/data.js';
import type { Coordination, HostInfo } from './coordination.js';
import { LocalCoordination } from './local.js';

export * from './coordination.js';

/**
 * The etcd client (gRPC, protobuf) is loaded only when the config asks for
 * etcd: it costs a single-host broker ~25 MB of memory for nothing.
 */
export async function coordinationFor(config: Config): Promise<Coordination> {
  const c = config.broker.coordination;
  if (c.type === 'local') return new LocalCoordination();
  const { EtcdCoordination } = await import('./etcd.js');
  return new EtcdCoordination({ endpoints: c.endpoints, prefix: c.prefix, timeoutMs: c.timeoutMs, hostId: config.broker.hostId, ...(c.tls ? { tls: c.tls } : {}) });
}

/** A digest of the tenancy (clusters, nodes, domains, admins, limits): brokers of one fleet should agree on it. */
export const configDigest = (config: Pick<Config, 'clusters' | 'admins'>): string =>
  `sha256:${createHash('sha256').update(JSON.stringify(policyData(config))).digest('hex').slice(0, 16)}`;

/**
 * Publishes this host every `everyMs` until stopped. `info` reads the toolstack
 * (the domains this host runs); a failure is logged and tried again next time.
 */
export function startPublishing(coordination: Coordination, info: () => Promise<HostInfo>, everyMs: number, onError: (err: Error) => void): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const once = async () => {
    try {
      await coordination.publish(await info());
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
    }
    if (!stopped) timer = setTimeout(() => void once(), everyMs);
  };
  void once();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
