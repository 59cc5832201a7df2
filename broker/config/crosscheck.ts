// The rules a schema cannot express, across entries: one owner per domain,
// one identity per key, node domains owned, names a toolstack would read as
// something else, key strength, limits that contradict each other, the
// listen address. Every problem located; then the Config is assembled.
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { BlockList, isIP } from 'node:net';
import { reservedDomainProblem } from '../../common/names.js';
import { parsePublicKey, type PublicKey } from '../identity/keys.js';
import type { Located } from './errors.js';
import { ConfigError } from './errors.js';
import { where, type Locator, type Path } from './locate.js';
import { ALL_ACTIONS, DEFAULT_FENCE_VIRT, DEFAULT_FENCE_VIRT_CHANNELS, DEFAULT_FENCE_VIRT_MULTICAST, DEFAULT_LIMITS, DEFAULT_TIMEOUTS, LIMIT_KEYS, type AdminConfig, type FenceVirtConfig, type RawFenceVirt, type ClusterConfig, type Config, type CoordinationConfig, type Limits, type MetricsListen, type NodeConfig, type RawConfig, type ToolstackConfig } from './types.js';

/** The rules that span entries: one owner per domain, one identity per key, node domains owned. */
export function crossCheck(raw: RawConfig, loc: Locator, abs: string): Omit<Config, 'sha256'> {
  const problems: Located[] = [];
  const base = dirname(abs);
  const owner = new Map<string, string>();
  const keyUser = new Map<string, string>();

  const takeKey = (path: Path, who: string, line: string): PublicKey | undefined => {
    const key = parsePublicKey(line);
    if (typeof key === 'string') {
      problems.push(loc.value(path, `${where(path)}: malformed public key (${key})`));
      return undefined;
    }
    const previous = keyUser.get(key.blob);
    if (previous) {
      problems.push(loc.value(path, `${where(path)}: key ${key.fingerprint} is already used by ${previous}; each key identifies exactly one node or admin`));
    } else {
      keyUser.set(key.blob, who);
    }
    return key;
  };

  const clusters: Record<string, ClusterConfig> = {};
  for (const [cname, c] of Object.entries(raw.clusters)) {
    c.domains.forEach((d, i) => {
      const reserved = reservedDomainProblem(d);
      if (reserved) problems.push(loc.value(['clusters', cname, 'domains', i], `domain ${d}: ${reserved}`));
      const first = owner.get(d);
      if (first !== undefined) {
        problems.push(loc.value(['clusters', cname, 'domains', i], `domain ${d} is owned by cluster ${first} already; a domain has one owner`));
      } else {
        owner.set(d, cname);
      }
    });
    const nodes: Record<string, NodeConfig> = {};
    for (const [nname, n] of Object.entries(c.nodes)) {
      const path = ['clusters', cname, 'nodes', nname];
      const key = takeKey([...path, 'key'], `node ${cname}/${nname}`, n.key);
      const domain = n.domain ?? nname;
      if (!c.domains.includes(domain)) {
        problems.push(
          n.domain !== undefined
            ? loc.value([...path, 'domain'], `node ${cname}/${nname}: its domain ${domain} is not among cluster ${cname}'s domains`)
            : loc.key(['clusters', cname, 'nodes'], nname, `node ${cname}/${nname}: no domain named ${nname} in cluster ${cname}'s domains (set "domain:" if the VM has another name)`),
        );
      }
      if (key) nodes[nname] = { name: nname, key, domain };
    }
    clusters[cname] = {
      name: cname,
      domains: [...c.domains],
      nodes,
      actions: c.actions ? [...c.actions] : [...ALL_ACTIONS],
      allowSelfOff: c.allow_self_off ?? false,
      ...(c.limits ? { limits: { fencesPerWindow: c.limits.fences_per_window, windowMs: c.limits.window * 1000 } } : {}),
    };
  }

  const admins: Record<string, AdminConfig> = {};
  for (const [aname, a] of Object.entries(raw.admins ?? {})) {
    const key = takeKey(['admins', aname, 'key'], `admin ${aname}`, a.key);
    if (key) admins[aname] = { name: aname, key };
  }

  const listen = parseListen(raw.broker.listen);
  if (typeof listen === 'string') problems.push(loc.value(['broker', 'listen'], `broker.listen: ${listen}`));

  const metrics = raw.broker.metrics === undefined ? undefined : metricsListen(raw.broker.metrics.listen);
  if (typeof metrics === 'string') problems.push(loc.value(['broker', 'metrics', 'listen'], `broker.metrics.listen: ${metrics}`));

  (raw.broker.fence_virt?.multicast?.groups ?? []).forEach((g, i) => {
    const p = multicastGroupProblem(g);
    if (p) problems.push(loc.value(['broker', 'fence_virt', 'multicast', 'groups', i], `broker.fence_virt.multicast.groups[${i}]: ${p}`));
  });
  const fenceVirt = raw.broker.fence_virt === undefined ? undefined : fenceVirtOf(raw.broker.fence_virt, base, (i, m) => problems.push(loc.value(['broker', 'fence_virt', 'listen', i], m)));
  const channels = raw.broker.fence_virt?.channels;
  if (channels && !isAbsolute(channels.dir)) problems.push(loc.value(['broker', 'fence_virt', 'channels', 'dir'], `broker.fence_virt.channels.dir: ${channels.dir} is not an absolute path (the domains' XML names the sockets by absolute path)`));
  // Discovery reads libvirt's domain XML: xl and sim have none to read.
  if (channels && raw.broker.toolstack.type !== 'virsh') problems.push(loc.key(['broker', 'fence_virt'], 'channels', `broker.fence_virt.channels needs toolstack type virsh (libvirt's domain XML says where each channel is), not ${raw.broker.toolstack.type}`));

  const limits = readLimits(raw.broker.limits ?? {});
  if (limits.maxUnauthenticated >= limits.maxConnections) {
    problems.push(
      loc.value(['broker', 'limits', 'max_unauthenticated'], `broker.limits.max_unauthenticated (${limits.maxUnauthenticated}) must be below max_connections (${limits.maxConnections}), or unauthenticated sockets could take every slot`),
    );
  }

  const race = raceWindowProblem(raw);
  if (race) problems.push(loc.value(race.path, race.message));

  if (problems.length || typeof listen === 'string' || typeof metrics === 'string') throw new ConfigError(problems);

  const toolstack: ToolstackConfig =
    raw.broker.toolstack.type === 'sim'
      ? { type: 'sim', state: resolve(base, raw.broker.toolstack.state) }
      : raw.broker.toolstack;
  return {
    file: abs,
    broker: {
      listen,
      hostKey: resolve(base, raw.broker.host_key),
      auditLog: resolve(base, raw.broker.audit_log),
      pidFile: raw.broker.pid_file === undefined ? undefined : resolve(base, raw.broker.pid_file),
      // Beside the host key by default: a folder only the broker's user enters.
      statusSocket: resolve(base, raw.broker.status_socket ?? join(dirname(raw.broker.host_key), 'status.sock')),
      policyBundle: raw.broker.policy_bundle === undefined ? undefined : resolve(base, raw.broker.policy_bundle),
      policyVerificationKey: raw.broker.policy_verification_key === undefined ? undefined : resolve(base, raw.broker.policy_verification_key),
      toolstack,
      timeouts: {
        commandMs: (raw.broker.timeouts?.command ?? DEFAULT_TIMEOUTS.commandMs / 1000) * 1000,
        verifyMs: (raw.broker.timeouts?.verify ?? DEFAULT_TIMEOUTS.verifyMs / 1000) * 1000,
        fenceRaceMs: (raw.broker.timeouts?.fence_race ?? DEFAULT_TIMEOUTS.fenceRaceMs / 1000) * 1000,
        requestMs: (raw.broker.timeouts?.request ?? DEFAULT_TIMEOUTS.requestMs / 1000) * 1000,
      },
      limits,
      hostId: raw.broker.host_id ?? hostname(),
      coordination: coordinationOf(raw.broker.coordination, base),
      metrics: metrics === undefined ? undefined : { listen: metrics },
      fenceVirt,
    },
    clusters,
    admins,
  };
}

/**
 * Limits from clusters.yaml (already schema-checked), defaults filled in. An
 * unset max_unauthenticated is kept below half of max_connections, so that
 * authenticated clients always have slots.
 */
function readLimits(raw: Record<string, number>): Limits {
  const out = { ...DEFAULT_LIMITS };
  for (const [field, [key, unit]] of Object.entries(LIMIT_KEYS) as [keyof Limits, [string, 'count' | 'seconds']][]) {
    const v = raw[key];
    if (v !== undefined) out[field] = unit === 'seconds' ? v * 1000 : v;
  }
  if (raw.max_unauthenticated === undefined) out.maxUnauthenticated = Math.min(DEFAULT_LIMITS.maxUnauthenticated, Math.max(1, Math.floor(out.maxConnections / 2)));
  return out;
}

function parseListen(listen: string): { host: string; port: number } | string {
  const cut = listen.lastIndexOf(':');
  const host = listen.slice(0, cut).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(cut + 1));
  // Port 0: the kernel picks one, printed in the ready line (tests use it).
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `port ${listen.slice(cut + 1)} is not in 0..65535`;
  return { host, port };
}

/** broker.fence_virt with its defaults; each listen entry that is no address literal is a located problem. */
function fenceVirtOf(raw: RawFenceVirt, base: string, problem: (index: number, message: string) => void): FenceVirtConfig {
  const D = DEFAULT_FENCE_VIRT;
  const listen: FenceVirtConfig['listen'] = [];
  (raw.listen ?? []).forEach((l, i) => {
    const at = parseListen(l);
    if (typeof at === 'string') problem(i, `broker.fence_virt.listen[${i}]: ${at}`);
    else if (isIP(at.host) === 0) problem(i, `broker.fence_virt.listen[${i}]: ${at.host} is not an address literal (a name could resolve elsewhere)`);
    else listen.push(at);
  });
  return {
    listen,
    keyDir: resolve(base, raw.key_dir),
    hash: raw.hash ?? D.hash,
    challengeHash: raw.challenge_hash ?? D.challengeHash,
    readTimeoutMs: raw.read_timeout === undefined ? D.readTimeoutMs : raw.read_timeout * 1000,
    maxConnections: raw.max_connections ?? D.maxConnections,
    maxConnectionsPerSource: raw.max_connections_per_source ?? D.maxConnectionsPerSource,
    unverifiedPerSource: raw.unverified_per_source ?? D.unverifiedPerSource,
    unverifiedTotal: raw.unverified_total ?? D.unverifiedTotal,
    multicast: raw.multicast === undefined ? undefined : multicastOf(raw.multicast),
    ...(raw.channels === undefined ? {} : { channels: channelsOf(raw.channels) }),
  };
}

/** broker.fence_virt.channels with its defaults (the schema has checked the values). */
function channelsOf(raw: NonNullable<RawFenceVirt['channels']>): NonNullable<FenceVirtConfig['channels']> {
  const D = DEFAULT_FENCE_VIRT_CHANNELS;
  return {
    dir: raw.dir,
    mode: raw.mode ?? D.mode,
    rescanMs: raw.rescan === undefined ? D.rescanMs : raw.rescan * 1000,
    requestsPerSecond: raw.requests_per_second ?? D.requestsPerSecond,
  };
}

const MULTICAST = new BlockList();
MULTICAST.addSubnet('224.0.0.0', 4, 'ipv4');
MULTICAST.addSubnet('ff00::', 8, 'ipv6');

/** Why `g` is no multicast group address, or undefined. */
export function multicastGroupProblem(g: string): string | undefined {
  const v = isIP(g);
  if (v === 0) return `${g} is not an address literal`;
  if (!MULTICAST.check(g, v === 4 ? 'ipv4' : 'ipv6')) return `${g} is not a multicast address (${v === 4 ? '224.0.0.0/4' : 'ff00::/8'})`;
  return undefined;
}

/** broker.fence_virt.multicast with its defaults (the schema has checked the values). */
function multicastOf(raw: NonNullable<RawFenceVirt['multicast']>): NonNullable<FenceVirtConfig['multicast']> {
  const D = DEFAULT_FENCE_VIRT_MULTICAST;
  return {
    groups: raw.groups ?? [...D.groups],
    port: raw.port ?? D.port,
    interface: raw.interface,
    maxCallbacks: raw.max_callbacks ?? D.maxCallbacks,
    connectTimeoutMs: raw.connect_timeout === undefined ? D.connectTimeoutMs : raw.connect_timeout * 1000,
  };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
/** sun_path is 108 bytes on Linux, with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

/**
 * The metrics listener: an absolute UNIX socket path, or a loopback address
 * literal. Anything else could be reachable from guests, and a name could
 * resolve elsewhere: refused.
 */
function metricsListen(listen: string): MetricsListen | string {
  if (listen.startsWith('/')) {
    const bytes = Buffer.byteLength(listen);
    return bytes > MAX_SOCKET_PATH ? `socket path of ${bytes} bytes; a UNIX socket path has at most ${MAX_SOCKET_PATH}` : { path: listen };
  }
  const at = parseListen(listen);
  if (typeof at === 'string') return at;
  const family = isIP(at.host);
  if (family === 0) return `${at.host} is not an address literal: a name could resolve to an address guests reach; use 127.0.0.1:PORT, [::1]:PORT or a UNIX socket path`;
  if (!LOOPBACK.check(at.host, family === 4 ? 'ipv4' : 'ipv6')) {
    return `${at.host} is not a loopback address: the metrics must never be reachable from guests; use 127.0.0.1:PORT, [::1]:PORT or a UNIX socket path (/run/fence-broker/metrics.sock)`;
  }
  return at;
}

/** Added to fence_race's floor with etcd: lease expiry runs on etcd's clock, checked about every half second, and a renewal needs a round trip. */
export const RACE_MARGIN_S = 5;

/**
 * With etcd a mark is a lease: it must outlive the fence it guards (the
 * request's deadline, the claim's bound and the re-read after a commit that
 * went unanswered), or the loser could fence the winner while the winner's
 * destroy is still in flight. Local marks live while the fence runs.
 */
function raceWindowProblem(raw: RawConfig): { path: Path; message: string } | undefined {
  const c = raw.broker.coordination;
  if (!c || c.type !== 'etcd') return undefined;
  const fenceRace = raw.broker.timeouts?.fence_race ?? DEFAULT_TIMEOUTS.fenceRaceMs / 1000;
  const request = raw.broker.timeouts?.request ?? DEFAULT_TIMEOUTS.requestMs / 1000;
  const timeout = c.timeout ?? 2;
  const floor = request + 2 * timeout + RACE_MARGIN_S;
  if (fenceRace >= floor) return undefined;
  const path = raw.broker.timeouts?.fence_race !== undefined ? ['broker', 'timeouts', 'fence_race'] : raw.broker.timeouts?.request !== undefined ? ['broker', 'timeouts', 'request'] : ['broker', 'coordination', 'timeout'];
  return {
    path,
    message: `broker.timeouts.fence_race (${fenceRace} s) must be at least timeouts.request (${request} s) + twice coordination.timeout (${timeout} s) + ${RACE_MARGIN_S} s = ${floor} s with etcd coordination: a race mark must outlive the fence it guards`,
  };
}

/** Coordination settings, defaults filled in, TLS paths resolved against the config's folder. */
function coordinationOf(raw: RawConfig['broker']['coordination'], base: string): CoordinationConfig {
  if (!raw || raw.type === 'local') return { type: 'local' };
  return {
    type: 'etcd',
    endpoints: raw.endpoints,
    prefix: raw.prefix ?? '/fence-broker',
    timeoutMs: (raw.timeout ?? 2) * 1000,
    ...(raw.tls
      ? { tls: { ca: resolve(base, raw.tls.ca), ...(raw.tls.cert ? { cert: resolve(base, raw.tls.cert) } : {}), ...(raw.tls.key ? { key: resolve(base, raw.tls.key) } : {}) } }
      : {}),
  };
}
