#!/usr/bin/env node
// fencectl: the host admin's and security reviewer's tool (DESIGN.md §10).
//   fencectl check   --config FILE
//   fencectl explain --config FILE --as CLUSTER/NODE | --admin NAME --action A [--target D] [--json]
//   fencectl fleet   [--config FILE] [--json]
//   fencectl keygen  --cluster C --node N [--out DIR] [--config FILE]
//   fencectl heartbeat --cluster C [--identity-file PATH] [--config FILE]
//   fencectl pacemaker --cluster C [--identity-file PATH] [--config FILE]
//   fencectl domains --fleet [--config FILE] [--json]
// Exit codes: 0 ok / allowed, 1 invalid / denied, 2 usage or config error.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { checkRequest } from '../common/request.js';
import { nameProblem } from '../common/names.js';
import { ConfigError, formatLocated } from './config/errors.js';
import { loadConfig, locateIn, type Config } from './config/load.js';
import { checkRego, loadPolicy } from './policy/load.js';
import type { Requester } from './policy/engine.js';
import { domainRows, formatDomainTable } from './domains.js';
import { toolstackFor } from './toolstack/index.js';
import { coordinationFor, type HostInfo } from './coordination/index.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../common/fingerprint.js';
import { generateEd25519 } from './identity/keygen.js';
import { fleetDomains, fleetHosts, formatFleetDomains, formatFleetHosts } from './coordination/fleet.js';

/** Where a host keeps its tenancy when --config is not given. */
const DEFAULT_CONFIG = '/etc/fence-broker/clusters.yaml';

const USAGE = `usage:
  fencectl check   --config FILE
  fencectl domains [--config FILE] [--cluster C] [--json]
  fencectl domains --fleet [--config FILE] [--json]
  fencectl fleet   [--config FILE] [--json]
  fencectl keygen  --cluster CLUSTER --node NODE [--out DIR] [--config FILE]
  fencectl explain --config FILE (--as CLUSTER/NODE | --admin NAME) --action ACTION [--target DOMAIN] [--json]
`;

class UsageError extends Error {}

const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const err = (s: string): void => void process.stderr.write(s.endsWith('\n') ? s : s + '\n');

function options<T extends ParseArgsConfig['options']>(args: string[], opts: T) {
  try {
    return parseArgs({ args, options: opts, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function configFrom(values: { config?: string | boolean | undefined }): Config {
  if (typeof values.config !== 'string') throw new UsageError('--config FILE is required');
  return loadConfig(values.config);
}

async function check(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string' } });
  const config = configFrom(v);
  const regoProblems = config.broker.policyBundle ? [] : await checkRego();
  if (regoProblems.length) {
    regoProblems.forEach((p) => err(formatLocated(p)));
    return 1;
  }
  let engine;
  try {
    engine = await loadPolicy(config);
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : '';
    err(formatLocated(locateIn(config.file, ['broker', 'policy_bundle'], `policy: ${(e as Error).message}${cause}`)));
    return 1;
  }
  const clusters = Object.values(config.clusters);
  const domains = clusters.reduce((n, c) => n + c.domains.length, 0);
  const nodes = clusters.reduce((n, c) => n + Object.keys(c.nodes).length, 0);
  out(
    `${config.file}: ok: ${clusters.length} clusters, ${domains} domains, ${nodes} nodes, ` +
      `${Object.keys(config.admins).length} admins; policy ${engine.revision} (wasm sha256 ${engine.sha256})`,
  );
  return 0;
}

function requesterFrom(as: unknown, admin: unknown): Requester {
  if (typeof admin === 'string') {
    if (as !== undefined) throw new UsageError('give either --as or --admin, not both');
    const p = nameProblem(admin);
    if (p) throw new UsageError(`--admin: ${p}`);
    return { admin };
  }
  if (typeof as !== 'string') throw new UsageError('--as CLUSTER/NODE (or --admin NAME) is required');
  const parts = as.split('/');
  if (parts.length !== 2) throw new UsageError(`--as: expected CLUSTER/NODE, got ${JSON.stringify(as)}`);
  const [cluster, node] = parts as [string, string];
  const p = nameProblem(cluster) ?? nameProblem(node);
  if (p) throw new UsageError(`--as: ${p}`);
  return { cluster, node };
}

async function explain(args: string[]): Promise<number> {
  const v = options(args, {
    config: { type: 'string' },
    as: { type: 'string' },
    admin: { type: 'string' },
    action: { type: 'string' },
    target: { type: 'string' },
    json: { type: 'boolean' },
  });
  const requester = requesterFrom(v.as, v.admin);
  if (typeof v.action !== 'string') throw new UsageError('--action is required');
  // The same grammar the broker applies before the policy sees a request.
  const parsed = checkRequest(v.action, typeof v.target === 'string' ? v.target : undefined);
  if (!parsed.ok) throw new UsageError(parsed.error);
  const config = configFrom(v);
  const engine = await loadPolicy(config);
  const input = { requester, action: parsed.request.verb, ...('target' in parsed.request ? { target: parsed.request.target } : {}) };
  const d = engine.decide(input);
  if (v.json) {
    out(JSON.stringify({ ...d, input, policy: { revision: engine.revision, sha256: engine.sha256 } }));
  } else {
    const who = 'admin' in requester ? `admin ${requester.admin}` : `${requester.cluster}/${requester.node}`;
    out(`${d.allow ? 'ALLOW' : 'DENY'}  ${who} ${input.action}${input.target ? ' ' + input.target : ''}`);
    for (const r of d.reasons) out(`  - ${r}`);
    if (d.domains) out(`  domains: ${d.domains.join(' ') || '(none)'}`);
    out(`  policy ${engine.revision} (wasm sha256 ${engine.sha256})`);
  }
  return d.allow ? 0 : 1;
}

/** What every broker of the config's fleet published (etcd coordination only). */
async function published(config: Config): Promise<HostInfo[]> {
  if (config.broker.coordination.type === 'local') {
    throw new UsageError(`${config.file}: broker.coordination is local: this host has no fleet (set coordination: { type: etcd, ... })`);
  }
  const coordination = coordinationFor(config);
  try {
    return await coordination.fleet();
  } finally {
    await coordination.close();
  }
}

async function fleet(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string', default: DEFAULT_CONFIG }, json: { type: 'boolean' } });
  const rows = fleetHosts(await published(configFrom(v)));
  if (v.json) out(JSON.stringify(rows));
  else {
    out(formatFleetHosts(rows));
    const odd = rows.filter((r) => r.flags.length).map((r) => `${r.host_id} (${r.flags.join(', ')})`);
    out(`
${rows.length} brokers; ${odd.length ? `differing from the rest: ${odd.join('; ')}` : 'all run the same config and policy'}`);
  }
  // 1 when the fleet disagrees: fit for a monitoring check.
  return rows.some((r) => r.flags.length) ? 1 : 0;
}

async function domains(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string', default: DEFAULT_CONFIG }, cluster: { type: 'string' }, json: { type: 'boolean' }, fleet: { type: 'boolean' } });
  const config = configFrom(v);
  if (v.fleet) {
    const rows = fleetDomains(await published(config));
    if (v.json) out(JSON.stringify(rows));
    else out(formatFleetDomains(rows));
    return 0;
  }
  if (typeof v.cluster === 'string' && !config.clusters[v.cluster]) throw new UsageError(`--cluster: no cluster ${v.cluster} in ${config.file}`);
  const engine = await loadPolicy(config);
  const toolstack = toolstackFor(config);
  const rows = domainRows(config, engine, await toolstack.list(), typeof v.cluster === 'string' ? v.cluster : undefined);
  if (v.json) out(JSON.stringify(rows));
  else {
    out(formatDomainTable(rows));
    const unowned = rows.filter((r) => r.flags.includes('unowned')).length;
    const missing = rows.filter((r) => r.flags.includes('missing')).length;
    out(`\n${rows.length} domains on ${toolstack.describe}; ${unowned} running and owned by no cluster; ${missing} owned but not on this host`);
  }
  return 0;
}

/** Where a node keeps its key, as the generated plugin parameters say. */
const NODE_KEY_PATH = '/etc/fence-broker/id_ed25519';

/**
 * A new node key pair (node:crypto, OpenSSH formats), written to DIR/NODE
 * (0600, never over an existing file) and DIR/NODE.pub; prints the
 * clusters.yaml entry and the node's plugin parameters. The config is only read.
 */
async function keygen(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string', default: DEFAULT_CONFIG }, cluster: { type: 'string' }, node: { type: 'string' }, out: { type: 'string', default: '.' } });
  if (typeof v.cluster !== 'string' || typeof v.node !== 'string') throw new UsageError('--cluster and --node are required');
  const bad = nameProblem(v.cluster) ?? nameProblem(v.node);
  if (bad) throw new UsageError(bad);
  const config = configFrom(v);
  const cluster = config.clusters[v.cluster];
  if (cluster?.nodes[v.node]) throw new UsageError(`${config.file}: node ${v.node} of cluster ${v.cluster} already has a key; remove it first to replace it`);
  const priv = resolve(join(String(v.out), v.node));
  if (existsSync(priv) || existsSync(`${priv}.pub`)) throw new UsageError(`${priv} or ${priv}.pub exists; not overwritten`);
  const pair = generateEd25519(`${v.cluster}/${v.node}`);
  writeFileSync(priv, pair.private, { mode: 0o600, flag: 'wx' });
  writeFileSync(`${priv}.pub`, pair.public + '\n', { mode: 0o644, flag: 'wx' });

  const hostKey = config.broker.hostKey;
  const fingerprint = hostFingerprint(config) ?? `(host key ${hostKey} not created yet: start the broker once, then run this again or ssh-keygen -lf ${hostKey}.pub)`;
  const { host, port } = config.broker.listen;
  const address = host === '0.0.0.0' || host === '::' ? `THIS-HOST:${port}` : `${host}:${port}`;
  out(`wrote ${priv} (private, 0600) and ${priv}.pub`);
  out(`\nadd to ${config.file}, under clusters.${v.cluster}.nodes${cluster ? '' : ` (cluster ${v.cluster} is not there yet: add it with its domains)`}:`);
  out(`      ${v.node}: { key: "${pair.public}" }${cluster && !cluster.domains.includes(v.node) ? `   # add domain: NAME if the node's domain is not called ${v.node}` : ''}`);
  out(`\nthen \`fencectl check\` and reload the broker (SIGHUP). On the node, install ${priv} as ${NODE_KEY_PATH} (0600) and use:`);
  out(`  ip=${address}\n  identity_file=${NODE_KEY_PATH}\n  host_key_fingerprint=${fingerprint}`);
  return 0;
}

/** The host key's fingerprint, or undefined before the broker first started. */
function hostFingerprint(config: Config): string | undefined {
  if (!existsSync(config.broker.hostKey)) return undefined;
  const parsed = ssh2.utils.parseKey(readFileSync(config.broker.hostKey));
  return parsed instanceof Error || Array.isArray(parsed) ? undefined : fingerprintOf(parsed.getPublicSSH());
}

/**
 * The cluster's ha.cf line for Heartbeat v1: every parameter of the plugin,
 * positionally, in getconfignames order (README "Use with Heartbeat").
 */
async function heartbeat(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string', default: DEFAULT_CONFIG }, cluster: { type: 'string' }, 'identity-file': { type: 'string', default: '/etc/ha.d/fence-broker.key' } });
  if (typeof v.cluster !== 'string') throw new UsageError('--cluster is required');
  const config = configFrom(v);
  if (!config.clusters[v.cluster]) throw new UsageError(`--cluster: no cluster ${v.cluster} in ${config.file}`);
  const identity = String(v['identity-file']);
  if (/\s/.test(identity) || !identity.startsWith('/')) throw new UsageError('--identity-file: an absolute path without spaces (stonith_host values are separated by spaces)');
  const fingerprint = hostFingerprint(config);
  if (!fingerprint) throw new UsageError(`host key ${config.broker.hostKey} not created yet: start the broker once`);
  const { host, port } = config.broker.listen;
  if (host === '0.0.0.0' || host === '::') throw new UsageError(`broker.listen is ${host}: give the nodes an address they reach (set listen to it)`);
  out(`stonith_host * external/fence-broker ${host} ${port} fence ${identity} ${fingerprint} 45 5`);
  return 0;
}

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The tenant's Pacemaker fencing: one stonith:fence_broker device per node,
 * each able to fence only that node (pcmk_host_list; pcmk_host_map names its
 * domain), and a location constraint keeping each device off the node it
 * fences, as the original recipe's clone with #uname rules did, so a device
 * never depends on the node it is about to kill. Printed as a CIB whose
 * configuration holds only these (nodes come from the cluster itself), so
 * `crm_verify --xml-file` checks it as it is, and its <resources> and
 * <constraints> load into a running cluster with cibadmin.
 */
async function pacemaker(args: string[]): Promise<number> {
  const v = options(args, { config: { type: 'string', default: DEFAULT_CONFIG }, cluster: { type: 'string' }, 'identity-file': { type: 'string', default: NODE_KEY_PATH } });
  if (typeof v.cluster !== 'string') throw new UsageError('--cluster is required');
  const config = configFrom(v);
  const cluster = config.clusters[v.cluster];
  if (!cluster) throw new UsageError(`--cluster: no cluster ${v.cluster} in ${config.file}`);
  const fingerprint = hostFingerprint(config);
  if (!fingerprint) throw new UsageError(`host key ${config.broker.hostKey} not created yet: start the broker once`);
  const { host, port } = config.broker.listen;
  if (host === '0.0.0.0' || host === '::') throw new UsageError(`broker.listen is ${host}: give the nodes an address they reach (set listen to it)`);
  const nodes = Object.values(cluster.nodes).sort((a, b) => a.name.localeCompare(b.name));
  const resources = nodes.map((n) => {
    const id = `fb-${n.name}`;
    const attrs: [string, string][] = [
      ['ip', `${host}:${port}`],
      ['identity_file', String(v['identity-file'])],
      ['host_key_fingerprint', fingerprint],
      ['pcmk_host_list', n.name],
      ['pcmk_host_map', `${n.name}:${n.domain}`],
    ];
    const nvpairs = attrs.map(([k, val]) => `      <nvpair id="${id}-${k}" name="${k}" value="${xmlAttr(val)}"/>`).join('\n');
    return [
      `<primitive id="${id}" class="stonith" type="fence_broker">`,
      `    <instance_attributes id="${id}-ia">`,
      nvpairs,
      '    </instance_attributes>',
      `    <operations><op id="${id}-monitor" name="monitor" interval="60s" timeout="60s"/></operations>`,
      '  </primitive>',
    ].join('\n');
  });
  const constraints = nodes.map((n) => `<rsc_location id="fb-${n.name}-not-on-${n.name}" rsc="fb-${n.name}" node="${n.name}" score="-INFINITY"/>`);
  out(
    [
      '<cib crm_feature_set="3.0.0" validate-with="pacemaker-3.0" epoch="1" num_updates="0" admin_epoch="0">',
      '  <configuration>',
      '    <crm_config/>',
      '    <nodes/>',
      `    <resources>\n${resources.map((r) => `      ${r.replace(/\n/g, '\n    ')}`).join('\n')}\n    </resources>`,
      `    <constraints>\n${constraints.map((c) => `      ${c}`).join('\n')}\n    </constraints>`,
      '  </configuration>',
      '  <status/>',
      '</cib>',
    ].join('\n'),
  );
  return 0;
}

const commands: Record<string, (args: string[]) => Promise<number>> = { check, explain, domains, fleet, keygen, heartbeat, pacemaker };

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    out(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  const run = commands[cmd];
  if (!run) {
    err(`fencectl: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`fencectl ${cmd}: ${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err(e.message);
      return cmd === 'check' ? 1 : 2;
    }
    err(`fencectl ${cmd}: ${(e as Error).message}`);
    // explain's 1 means "denied"; any other failure there is a config/setup error.
    return cmd === 'explain' ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
