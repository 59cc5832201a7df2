// The validated configuration: what the rest of the broker reads (clusters.yaml
// after loading and cross-checks), with its defaults. Types and defaults only.
import type { PublicKey } from '../identity/keys.js';

export const ALL_ACTIONS = ['status', 'on', 'off', 'reset'] as const;
export type PowerAction = (typeof ALL_ACTIONS)[number];

export type ToolstackConfig =
  | { type: 'sim'; state: string }
  | { type: 'xl'; command?: string; config_dir?: string; domain_configs?: Record<string, string> }
  | { type: 'virsh'; uri: string; command?: string };

export interface Timeouts {
  /** One toolstack call, ms; the child is killed after it. */
  commandMs: number;
  /** Waiting for a domain to be confirmed off or running, ms. */
  verifyMs: number;
  /** How long a fenced node's power requests are refused, ms. */
  fenceRaceMs: number;
  /**
   * Deadline of one request, from its arrival to its reply, ms: below
   * Pacemaker's default stonith-timeout (60 s), so the cluster hears an
   * answer before it gives up. Nothing touches the toolstack after it.
   */
  requestMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { commandMs: 10_000, verifyMs: 30_000, fenceRaceMs: 60_000, requestMs: 40_000 };

/** Bounds of the front door and the request queues (README, "Limits"). */
export interface Limits {
  /** All TCP connections. */
  maxConnections: number;
  /** Connections that have not proven a key yet (sshd's MaxStartups). */
  maxUnauthenticated: number;
  /** ...of those, from one source address. */
  maxUnauthenticatedPerSource: number;
  /** Authenticated connections of one key. */
  maxPerIdentity: number;
  /** Authenticated connections of all the nodes of one cluster. */
  maxPerCluster: number;
  /** Open session channels on one connection (sshd's MaxSessions). */
  maxSessions: number;
  maxAuthAttempts: number;
  /** Absolute bound from accept to authenticated; bytes trickled in do not extend it. */
  handshakeTimeoutMs: number;
  /** An authenticated connection with no request running is closed after this. */
  idleTimeoutMs: number;
  /** Requests of one identity waiting or running; beyond: busy. */
  maxQueuePerIdentity: number;
  /** Reads (status) of one domain waiting or running; beyond: busy. */
  maxReadsPerDomain: number;
  /** Power actions of one domain waiting or running; beyond: busy. Separate from reads, so reads never crowd out a fence. */
  maxPowerPerDomain: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxConnections: 256,
  maxUnauthenticated: 64,
  maxUnauthenticatedPerSource: 8,
  maxPerIdentity: 8,
  maxPerCluster: 32,
  maxSessions: 10,
  maxAuthAttempts: 6,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  maxQueuePerIdentity: 32,
  maxReadsPerDomain: 64,
  maxPowerPerDomain: 8,
};

/** clusters.yaml's snake_case key of each limit, and whether it is in seconds. */
export const LIMIT_KEYS: Record<keyof Limits, [string, 'count' | 'seconds']> = {
  maxConnections: ['max_connections', 'count'],
  maxUnauthenticated: ['max_unauthenticated', 'count'],
  maxUnauthenticatedPerSource: ['max_unauthenticated_per_source', 'count'],
  maxPerIdentity: ['max_per_identity', 'count'],
  maxPerCluster: ['max_per_cluster', 'count'],
  maxSessions: ['max_sessions', 'count'],
  maxAuthAttempts: ['max_auth_attempts', 'count'],
  handshakeTimeoutMs: ['handshake_timeout', 'seconds'],
  idleTimeoutMs: ['idle_timeout', 'seconds'],
  maxQueuePerIdentity: ['max_queue_per_identity', 'count'],
  maxReadsPerDomain: ['max_reads_per_domain', 'count'],
  maxPowerPerDomain: ['max_power_per_domain', 'count'],
};

export interface NodeConfig {
  name: string;
  key: PublicKey;
  /** The node's own domain (default: its name). */
  domain: string;
}

export interface ClusterConfig {
  name: string;
  domains: string[];
  nodes: Record<string, NodeConfig>;
  actions: PowerAction[];
  allowSelfOff: boolean;
  /** Storm limit: at most `fencesPerWindow` distinct domains fenced within `windowMs`. */
  limits?: { fencesPerWindow: number; windowMs: number };
}

export type CoordinationConfig =
  | { type: 'local' }
  | { type: 'etcd'; endpoints: string[]; prefix: string; timeoutMs: number; tls?: { ca: string; cert?: string; key?: string } };

/** Where the Prometheus metrics are served: loopback TCP or a UNIX socket, never a guest-reachable address. */
export type MetricsListen = { host: string; port: number } | { path: string };

/** The fence_virt door (broker.fence_virt); undefined: off. */
export interface FenceVirtConfig {
  /** TCP listeners (address literals). */
  listen: { host: string; port: number }[];
  keyDir: string;
  /** The weakest request hash accepted. */
  hash: 'sha256' | 'sha512';
  challengeHash: 'sha256' | 'sha512';
  readTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerSource: number;
  unverifiedPerSource: number;
  unverifiedTotal: number;
  /** fence_xvm's multicast listener (broker.fence_virt.multicast); undefined: off. */
  multicast: FenceVirtMulticastConfig | undefined;
  /** The serial channel door (broker.fence_virt.channels); absent: off. */
  channels?: FenceVirtChannelsConfig;
}

export interface FenceVirtChannelsConfig {
  /** Absolute; a socket counts only directly inside it. */
  dir: string;
  /** serial: <serial type='unix'>; vmchannel: <channel type='unix'> (guestfwd). */
  mode: 'serial' | 'vmchannel';
  rescanMs: number;
  requestsPerSecond: number;
}

export const DEFAULT_FENCE_VIRT_CHANNELS = { mode: 'serial', rescanMs: 5_000, requestsPerSecond: 2 } as const;

export interface FenceVirtMulticastConfig {
  /** Groups joined (fence_xvm's -a): 225.0.0.12 and ff05::3:1 by default. */
  groups: string[];
  port: number;
  /** The interface to join on, by name; undefined: the kernel's route to the group. */
  interface: string | undefined;
  /** Callbacks (connect back, challenges, the request) at once. */
  maxCallbacks: number;
  connectTimeoutMs: number;
}

export const DEFAULT_FENCE_VIRT_MULTICAST = { groups: ['225.0.0.12', 'ff05::3:1'], port: 1229, maxCallbacks: 32, connectTimeoutMs: 5_000 } as const;

export const DEFAULT_FENCE_VIRT = { hash: 'sha256', challengeHash: 'sha256', readTimeoutMs: 5_000, maxConnections: 128, maxConnectionsPerSource: 8, unverifiedPerSource: 20, unverifiedTotal: 500 } as const;

export interface RawFenceVirt {
  listen?: string[];
  key_dir: string;
  hash?: 'sha256' | 'sha512';
  challenge_hash?: 'sha256' | 'sha512';
  read_timeout?: number;
  max_connections?: number;
  max_connections_per_source?: number;
  unverified_per_source?: number;
  unverified_total?: number;
  multicast?: { groups?: string[]; port?: number; interface?: string; max_callbacks?: number; connect_timeout?: number };
  channels?: { dir: string; mode?: 'serial' | 'vmchannel'; rescan?: number; requests_per_second?: number };
}

export interface AdminConfig {
  name: string;
  key: PublicKey;
}

export interface Config {
  /** Absolute path of the file read; relative paths inside resolve against its folder. */
  file: string;
  /** sha256 (hex) of the file's bytes as read: what the audit's reload events name. */
  sha256: string;
  broker: {
    listen: { host: string; port: number };
    hostKey: string;
    auditLog: string;
    /** Where the daemon writes its pid while it serves (fencectl reload signals it); undefined: none. */
    pidFile: string | undefined;
    /** The status socket fencectl status asks (0600 in a 0700 folder); default beside the host key. */
    statusSocket: string;
    policyBundle: string | undefined;
    /** PEM public key: when set, the bundle must be signed by it (OPA's .signatures.json). */
    policyVerificationKey: string | undefined;
    toolstack: ToolstackConfig;
    timeouts: Timeouts;
    limits: Limits;
    /** This host's name in the fleet. */
    hostId: string;
    coordination: CoordinationConfig;
    /** The metrics endpoint; undefined: off (the default). */
    metrics: { listen: MetricsListen } | undefined;
    /** The fence_virt door; undefined: off (the default). */
    fenceVirt: FenceVirtConfig | undefined;
  };
  clusters: Record<string, ClusterConfig>;
  admins: Record<string, AdminConfig>;
}

/** The raw shape the schema guarantees (before cross-checks). */
export interface RawConfig {
  broker: {
    listen: string;
    host_key: string;
    audit_log: string;
    pid_file?: string;
    status_socket?: string;
    policy_bundle?: string;
    policy_verification_key?: string;
    toolstack: ToolstackConfig;
    timeouts?: { command?: number; verify?: number; fence_race?: number; request?: number };
    limits?: Record<string, number>;
    host_id?: string;
    coordination?: { type: 'local' } | { type: 'etcd'; endpoints: string[]; prefix?: string; timeout?: number; tls?: { ca: string; cert?: string; key?: string } };
    metrics?: { listen: string };
    fence_virt?: RawFenceVirt;
  };
  clusters: Record<
    string,
    {
      domains: string[];
      nodes: Record<string, { key: string; domain?: string }>;
      actions?: PowerAction[];
      allow_self_off?: boolean;
      limits?: { fences_per_window: number; window: number };
    }
  >;
  admins?: Record<string, { key: string }>;
}

