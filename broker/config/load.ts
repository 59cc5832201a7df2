// clusters.yaml → a validated Config, or every problem found, each located
// (FILE:LINE:COL). Three passes: YAML syntax (the `yaml` library, duplicate
// keys included), the published JSON Schema (ajv), then the cross-references a
// schema cannot express (ownership, key reuse, key syntax, node domains).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { projectPath } from '../../common/paths.js';
import { parsePublicKey, type PublicKey } from '../identity/keys.js';
import { ConfigError, type Located } from './errors.js';

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
const LIMIT_KEYS: Record<keyof Limits, [string, 'count' | 'seconds']> = {
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
}

export interface AdminConfig {
  name: string;
  key: PublicKey;
}

export interface Config {
  /** Absolute path of the file read; relative paths inside resolve against its folder. */
  file: string;
  broker: {
    listen: { host: string; port: number };
    hostKey: string;
    auditLog: string;
    policyBundle: string | undefined;
    toolstack: ToolstackConfig;
    timeouts: Timeouts;
    limits: Limits;
  };
  clusters: Record<string, ClusterConfig>;
  admins: Record<string, AdminConfig>;
}

/** The raw shape the schema guarantees (before cross-checks). */
interface RawConfig {
  broker: {
    listen: string;
    host_key: string;
    audit_log: string;
    policy_bundle?: string;
    toolstack: ToolstackConfig;
    timeouts?: { command?: number; verify?: number; fence_race?: number; request?: number };
    limits?: Record<string, number>;
  };
  clusters: Record<
    string,
    {
      domains: string[];
      nodes: Record<string, { key: string; domain?: string }>;
      actions?: PowerAction[];
      allow_self_off?: boolean;
    }
  >;
  admins?: Record<string, { key: string }>;
}

export const SCHEMA_PATH = projectPath('schema', 'clusters.schema.json');

let validator: ReturnType<Ajv['compile']> | undefined;
function schemaValidator(): ReturnType<Ajv['compile']> {
  if (!validator) {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as object;
    validator = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);
  }
  return validator;
}

type Path = (string | number)[];

/** Positions of YAML nodes, for messages. */
class Locator {
  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  at(offset: number, message: string): Located {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col, message };
  }

  get(path: Path): unknown {
    return this.doc.getIn(path);
  }

  /** The value at `path`, or the nearest ancestor that exists. */
  value(path: Path, message: string): Located {
    for (let n = path.length; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (node?.range) return this.at(node.range[0], message);
    }
    return this.at(0, message);
  }

  /** The key `key` of the mapping at `path` (falls back to the mapping itself). */
  key(path: Path, key: string, message: string): Located {
    const map = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true);
    if (isMap(map)) {
      for (const pair of map.items) {
        if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) {
          return this.at(pair.key.range[0], message);
        }
      }
    }
    return this.value(path, message);
  }
}

const pointerToPath = (pointer: string): Path =>
  pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s));

const where = (path: Path): string => (path.length ? path.join('.') : 'top level');

/** One readable, located message per schema error (noise from if/then dropped). */
function schemaProblem(e: ErrorObject, loc: Locator): Located | undefined {
  const path = pointerToPath(e.instancePath);
  const at = where(path);
  // Errors inside propertyNames come twice; the propertyNames summary names the key.
  if (e.propertyName !== undefined) return undefined;
  switch (e.keyword) {
    case 'if':
      return undefined; // the failing `then` branch reports the actual problem
    case 'additionalProperties': {
      const extra = String(e.params.additionalProperty);
      return loc.key(path, extra, `unknown key "${extra}" in ${at}`);
    }
    case 'required':
      return loc.value(path, `${at} is missing required key "${String(e.params.missingProperty)}"`);
    case 'propertyNames': {
      const name = String(e.params.propertyName);
      return loc.key(path, name, `name ${JSON.stringify(name)} in ${at} must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`);
    }
    case 'pattern': {
      const last = path[path.length - 1];
      if (last === 'key') return loc.value(path, `${at}: not an OpenSSH public key line ("ssh-ed25519 AAAA... comment")`);
      if (last === 'listen') return loc.value(path, `${at}: expected host:port, e.g. 127.0.0.1:2222`);
      return loc.value(path, `${at}: ${JSON.stringify(loc.get(path))} must match ${String(e.params.pattern)}`);
    }
    case 'enum':
      return loc.value(path, `${at}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`);
    case 'uniqueItems':
      return loc.value([...path, Number(e.params.i)], `${at}: duplicate entry (items ${e.params.j} and ${e.params.i} are equal)`);
    case 'minItems':
    case 'minProperties':
      return loc.value(path, `${at}: must not be empty`);
    default:
      return loc.value(path, `${at}: ${e.message ?? e.keyword}`);
  }
}

/** Reads, parses and validates a clusters.yaml. Throws ConfigError listing every problem found. */
export function loadConfig(file: string): Config {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `cannot read: ${(err as Error).message}` }]);
  }
  return parseConfig(text, file, abs);
}

/** As loadConfig, from text. `display` names the file in messages; `abs` anchors relative paths. */
export function parseConfig(text: string, display: string, abs: string = resolve(display)): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true });
  const loc = new Locator(display, doc, lines);

  const syntax = [...doc.errors, ...doc.warnings];
  if (syntax.length) {
    throw new ConfigError(
      syntax.map((e) => loc.at(e.pos[0], `YAML: ${e.message.split('\n')[0] ?? e.message}`)),
    );
  }

  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) {
    throw new ConfigError([loc.at(0, 'empty file: expected the keys "broker" and "clusters"')]);
  }
  const validate = schemaValidator();
  if (!validate(raw)) {
    const problems = (validate.errors ?? [])
      .map((e) => schemaProblem(e, loc))
      .filter((p): p is Located => p !== undefined);
    throw new ConfigError(dedupe(problems));
  }
  return crossCheck(raw as RawConfig, loc, abs);
}

function dedupe(problems: Located[]): Located[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.line}:${p.col}:${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The rules that span entries: one owner per domain, one identity per key, node domains owned. */
function crossCheck(raw: RawConfig, loc: Locator, abs: string): Config {
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
      if (/^[0-9]+$/.test(d)) {
        problems.push(loc.value(['clusters', cname, 'domains', i], `domain ${d}: a bare number is a domain id to xl and virsh, not a name`));
      }
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
    };
  }

  const admins: Record<string, AdminConfig> = {};
  for (const [aname, a] of Object.entries(raw.admins ?? {})) {
    const key = takeKey(['admins', aname, 'key'], `admin ${aname}`, a.key);
    if (key) admins[aname] = { name: aname, key };
  }

  const listen = parseListen(raw.broker.listen);
  if (typeof listen === 'string') problems.push(loc.value(['broker', 'listen'], `broker.listen: ${listen}`));

  const limits = readLimits(raw.broker.limits ?? {});
  if (limits.maxUnauthenticated >= limits.maxConnections) {
    problems.push(
      loc.value(['broker', 'limits', 'max_unauthenticated'], `broker.limits.max_unauthenticated (${limits.maxUnauthenticated}) must be below max_connections (${limits.maxConnections}), or unauthenticated sockets could take every slot`),
    );
  }

  if (problems.length || typeof listen === 'string') throw new ConfigError(problems);

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
      policyBundle: raw.broker.policy_bundle === undefined ? undefined : resolve(base, raw.broker.policy_bundle),
      toolstack,
      timeouts: {
        commandMs: (raw.broker.timeouts?.command ?? DEFAULT_TIMEOUTS.commandMs / 1000) * 1000,
        verifyMs: (raw.broker.timeouts?.verify ?? DEFAULT_TIMEOUTS.verifyMs / 1000) * 1000,
        fenceRaceMs: (raw.broker.timeouts?.fence_race ?? DEFAULT_TIMEOUTS.fenceRaceMs / 1000) * 1000,
        requestMs: (raw.broker.timeouts?.request ?? DEFAULT_TIMEOUTS.requestMs / 1000) * 1000,
      },
      limits,
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
