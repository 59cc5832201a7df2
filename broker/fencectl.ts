#!/usr/bin/env node
// fencectl: the host admin's and security reviewer's tool (docs/design.md §10).
// Its commands and options are the tables of admin/commands.ts, from which
// parsing, --help and fencectl(8) are derived; `fencectl CMD --help` shows them.
// Exit codes: 0 ok / allowed / no change, 1 invalid / denied / not reloaded /
// decisions differ, 2 usage or config error.
import { checkRequest } from '../common/request.js';
import { nameProblem } from '../common/names.js';
import { ConfigError, formatLocated } from './config/errors.js';
import { loadConfig, locateIn, type Config } from './config/load.js';
import { bundleFrom, checkRego, loadPolicy } from './policy/load.js';
import { POLICIES_DIR } from './policy/bundle.js';
import { PolicyEngine, reasonText, type Requester } from './policy/engine.js';
import { policyData } from './policy/data.js';
import { diffDecisions, domainsOf, formatChanges, formatMatrix, matrixOf, requesterText } from './admin/matrix.js';
import { domainRows, formatDomainTable } from './domains.js';
import { toolstackFor } from './toolstack/index.js';
import { coordinationFor, type HostInfo } from './coordination/index.js';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { livePid } from './pidfile.js';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../common/fingerprint.js';
import { generateEd25519 } from './identity/keygen.js';
import { fleetDomains, fleetHosts, formatFleetDomains, formatFleetHosts } from './coordination/fleet.js';
import { brokerAddress, fenceVirtEndpoints, FORMATS, isAgent, isFormat, render, tenantFenceVirt, tenantFenceVirtSerial, tenantFencing } from './admin/pacemaker.js';
import { CHANNEL_ADDRESS, CHANNEL_PORT, channelText, channelXml, socketPath, socketPathProblem } from './admin/channel.js';
import type { ClusterConfig, FenceVirtChannelsConfig, NodeConfig } from './config/types.js';
import { NODE_KEY_PATH } from '../common/node-key.js';
import { projectPath } from '../common/paths.js';
import { asksHelp, commandHelp, live, parseCommand, parseCommandLine, programHelp, tryHelp, UsageError, type CommandSpec, type Values } from './admin/cli.js';
import { FENCECTL, SERIAL_DEVICE, versionText } from './admin/commands.js';
import { configWarnings, domainsWithoutNode, keyBlobsIn } from './admin/warnings.js';


import { askStatus, formatStatus } from './admin/status.js';
import { KEY_BYTES, keyPath, writeNodeKey } from './doors/fence-virt/keys.js';
import { loadFenceVirtKeys } from './doors/fence-virt/index.js';

const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const err = (s: string): void => void process.stderr.write(s.endsWith('\n') ? s : s + '\n');

/** The command's values, parsed and checked against its table. */
const options = (cmd: string, args: string[]): Values => parseCommand(specOf(cmd), args);

function specOf(cmd: string): CommandSpec {
  const spec = FENCECTL.commands.find((c) => c.name === cmd);
  if (!spec) throw new Error(`fencectl: no option table for ${cmd}`);
  return spec;
}

const str = (v: Values, name: string): string | undefined => (typeof v[name] === 'string' ? (v[name] as string) : undefined);

function configFrom(values: Values): Config {
  // Every command's table defaults it (admin/commands.ts).
  if (typeof values.config !== 'string') throw new UsageError('--config FILE is required');
  return loadConfig(values.config);
}

/**
 * What `check` validates, on a loaded config: the Rego sources (where they are
 * built here) and the policy bundle with the config's data. Prints every
 * problem, located; the ready engine when all is well.
 */
async function validated(config: Config): Promise<PolicyEngine | undefined> {
  // Rego sources exist only in a checkout: an installed tree (install.sh) ships
  // the prebuilt bundle and no opa, and loadPolicy below still validates the bundle.
  const regoProblems = config.broker.policyBundle || !existsSync(POLICIES_DIR) ? [] : await checkRego();
  if (regoProblems.length) {
    regoProblems.forEach((p) => err(formatLocated(p)));
    return undefined;
  }
  try {
    return await loadPolicy(config);
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : '';
    err(formatLocated(locateIn(config.file, ['broker', 'policy_bundle'], `policy: ${(e as Error).message}${cause}`)));
    return undefined;
  }
}

async function check(args: string[]): Promise<number> {
  const v = options('check', args);
  const config = configFrom(v);
  // The fence_virt keys, as the daemon reads them with the config (a problem is located at key_dir).
  const fenceVirtKeys = loadFenceVirtKeys(config);
  const engine = await validated(config);
  if (!engine) return 1;
  // Warnings, located; the config is valid all the same, so the exit stays 0.
  for (const w of configWarnings(config, exampleKeys())) err(formatLocated(locateIn(config.file, w.key, w.message)));
  const clusters = Object.values(config.clusters);
  const domains = clusters.reduce((n, c) => n + c.domains.length, 0);
  const nodes = clusters.reduce((n, c) => n + Object.keys(c.nodes).length, 0);
  out(
    `${config.file}: ok: ${clusters.length} clusters, ${domains} domains, ${nodes} nodes, ` +
      `${Object.keys(config.admins).length} admins${config.broker.fenceVirt ? `, ${fenceVirtKeys.length} fence_virt keys` : ''}; policy ${engine.revision} (wasm sha256 ${engine.sha256})`,
  );
  return 0;
}

/** The placeholder keys of the example config install.sh installs (contrib/ ships in the release too). */
function exampleKeys(): Set<string> {
  try {
    return keyBlobsIn(readFileSync(projectPath('contrib', 'clusters.example.yaml'), 'utf8'));
  } catch (e) {
    err(`fencectl check: cannot read the example config to spot its placeholder keys: ${(e as Error).message}`);
    return new Set();
  }
}

/**
 * reload: validates as `check` does, then signals the running daemon (the pid
 * in broker.pid_file, else systemd's fence-broker.service) and reads its answer
 * from the audit log, where the daemon writes one reload event per attempt.
 * Exit 0 only when the daemon now runs the config and policy validated here.
 */
async function reload(args: string[]): Promise<number> {
  const v = options('reload', args);
  const timeoutS = Number(v.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError(`--timeout: seconds > 0, got ${JSON.stringify(v.timeout)}`);
  let config: Config;
  try {
    config = configFrom(v);
    loadFenceVirtKeys(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`${e.message}\nfencectl reload: ${String(v.config)} is not valid; the daemon was not signalled`);
    return 1;
  }
  const engine = await validated(config);
  if (!engine) {
    err(`fencectl reload: ${config.file} is not valid; the daemon was not signalled`);
    return 1;
  }
  const audit = config.broker.auditLog;
  const from = existsSync(audit) ? statSync(audit).size : 0;
  const pid = await signalDaemon(config);
  const event = await reloadEvent(audit, from, pid, timeoutS * 1000);
  if (!event) {
    err(`fencectl reload: pid ${pid} wrote no reload event to ${audit} within ${timeoutS} s; is that its audit log?`);
    return 1;
  }
  if (!event.ok) {
    err(`fencectl reload: pid ${pid} refused the reload: ${String(event.error)}`);
    err(`  it keeps policy ${String(event.kept?.policy)} and config sha256 ${String(event.kept?.config_sha256).slice(0, 16)}`);
    return 1;
  }
  const was = event.old;
  const now = event.new;
  if (now?.policy !== engine.revision || now?.config_sha256 !== config.sha256) {
    err(`fencectl reload: pid ${pid} reloaded, but runs policy ${String(now?.policy)} / config sha256 ${String(now?.config_sha256).slice(0, 16)}, not ${engine.revision} / ${config.sha256.slice(0, 16)} validated here: did a file change in between? Run reload again.`);
    return 1;
  }
  out(`reloaded fence-broker pid ${pid}: policy ${String(was?.policy)} -> ${now.policy}, config sha256 ${String(was?.config_sha256).slice(0, 16)} -> ${now.config_sha256.slice(0, 16)}`);
  out(`  ${Number(event.connections_closed ?? 0)} connections closed (keys no longer valid)${event.broker_settings_need_restart ? '; broker: settings changed and take effect only on restart' : ''}`);
  return 0;
}

interface ReloadEvent {
  ok: boolean;
  pid: number;
  error?: string;
  old?: { policy: string; config_sha256: string };
  new?: { policy: string; config_sha256: string };
  kept?: { policy: string; config_sha256: string };
  connections_closed?: number;
  broker_settings_need_restart?: boolean;
}

/** Sends SIGHUP to the daemon of `config`; its pid. No shell: a pid from the pid file, or systemctl's own arguments. */
async function signalDaemon(config: Config): Promise<number> {
  const file = config.broker.pidFile;
  if (file) {
    const pid = livePid(file);
    if (pid === undefined) throw new Error(`no running fence-broker holds ${file} (broker.pid_file): nothing to reload`);
    process.kill(pid, 'SIGHUP');
    return pid;
  }
  const unit = 'fence-broker.service';
  const main = await execa('systemctl', ['show', '--property', 'MainPID', '--value', unit], { reject: false });
  const pid = Number(main.stdout.trim());
  if (main.exitCode !== 0 || !(pid > 0)) {
    throw new Error(`broker.pid_file is not set and systemd reports no running ${unit}${main.stderr ? ` (${main.stderr.trim()})` : ''}: set pid_file or start the unit`);
  }
  const r = await execa('systemctl', ['reload', unit], { reject: false });
  if (r.exitCode !== 0) throw new Error(`systemctl reload ${unit} failed: ${r.stderr.trim()}`);
  return pid;
}

/** The first reload event of `pid` written to the audit log after byte `from`; undefined after `timeoutMs`. */
async function reloadEvent(file: string, from: number, pid: number, timeoutMs: number): Promise<ReloadEvent | undefined> {
  const deadline = performance.now() + timeoutMs;
  let offset = from;
  let partial = '';
  for (;;) {
    let size = 0;
    try {
      size = statSync(file).size;
    } catch {
      // Not there (yet): logrotate moved it and the daemon reopens it on this very SIGHUP.
    }
    if (size < offset) {
      offset = 0;
      partial = '';
    }
    if (size > offset) {
      const fd = openSync(file, 'r');
      try {
        const buf = Buffer.alloc(size - offset);
        // Only what was read: the file may have been cut (logrotate's copytruncate) since the stat.
        const n = readSync(fd, buf, 0, buf.length, offset);
        offset += n;
        const lines = (partial + buf.subarray(0, n).toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          try {
            const rec = JSON.parse(line) as Partial<ReloadEvent> & { event?: string };
            if (rec.event === 'reload' && rec.pid === pid) return rec as ReloadEvent;
          } catch {
            // Not a JSON line: not ours to judge here.
          }
        }
      } finally {
        closeSync(fd);
      }
    }
    if (performance.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function requesterFrom(as: unknown, admin: unknown): Requester {
  if (typeof admin === 'string') {
    if (as !== undefined) throw new UsageError('give either --as or --as-admin, not both');
    const p = nameProblem(admin);
    if (p) throw new UsageError(`--as-admin: ${p}`);
    return { admin };
  }
  if (typeof as !== 'string') throw new UsageError('--as CLUSTER/NODE (or --as-admin NAME) is required');
  const parts = as.split('/');
  if (parts.length !== 2) throw new UsageError(`--as: expected CLUSTER/NODE, got ${JSON.stringify(as)}`);
  const [cluster, node] = parts as [string, string];
  const p = nameProblem(cluster) ?? nameProblem(node);
  if (p) throw new UsageError(`--as: ${p}`);
  return { cluster, node };
}

async function explain(args: string[]): Promise<number> {
  const v = options('explain', args);
  const requester = requesterFrom(v.as, v['as-admin']);
  if (v.all) return explainAll(v, requester);
  if (typeof v.action !== 'string') throw new UsageError('--action is required (or --all for every action on every domain)');
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
    out(`${d.allow ? 'ALLOW' : 'DENY'}  ${requesterText(requester)} ${input.action}${input.target ? ' ' + input.target : ''}`);
    for (const r of d.reasons) out(`  - ${reasonText(r)}`);
    if (d.domains) out(`  domains: ${d.domains.join(' ') || '(none)'}`);
    out(`  policy ${engine.revision} (wasm sha256 ${engine.sha256})`);
  }
  return d.allow ? 0 : 1;
}

/**
 * explain --all: every action on every domain of the config for one
 * requester, as it stands (no fence race lost, no storm count).
 */
async function explainAll(v: Values, requester: Requester): Promise<number> {
  if (v.action !== undefined || v.target !== undefined) throw new UsageError('--all covers every action and domain: drop --action/--target');
  const config = configFrom(v);
  const engine = await loadPolicy(config);
  const cells = matrixOf(engine, requester, domainsOf(config));
  if (v.json) {
    out(JSON.stringify({ requester, policy: { revision: engine.revision, sha256: engine.sha256 }, decisions: cells }));
    return 0;
  }
  out(`${requesterText(requester)}: every action on the ${domainsOf(config).length} domains of ${config.file}`);
  out(`policy ${engine.revision}; power actions as asked by a node that lost no fence race and hit no storm limit\n`);
  out(formatMatrix(cells));
  const allowed = cells.filter((c) => c.allow).length;
  out(`\n${allowed} of ${cells.length} allowed`);
  return 0;
}

/**
 * diff-policy: every decision over the config that differs between two
 * policy revisions (bundles, or Rego folders built with opa). Exit 0 when
 * none differ, 1 when some do (fit for a CI gate), 2 on error.
 */
async function diffPolicy(args: string[]): Promise<number> {
  const v = options('diff-policy', args);
  if (typeof v.old !== 'string' || typeof v.new !== 'string') throw new UsageError('--old and --new (a bundle .tar.gz or a policy folder) are required');
  const config = configFrom(v);
  const data = policyData(config);
  const [before, after] = await Promise.all([bundleFrom(v.old).then((b) => PolicyEngine.load(b, data)), bundleFrom(v.new).then((b) => PolicyEngine.load(b, data))]);
  const { compared, changes } = diffDecisions(before, after, config);
  if (v.json) {
    out(JSON.stringify({ old: before.revision, new: after.revision, compared, changes }));
  } else {
    out(`${before.revision} -> ${after.revision} over ${config.file}: ${compared} decisions compared, ${changes.length} differ`);
    if (changes.length) out(formatChanges(changes));
  }
  return changes.length ? 1 : 0;
}

/** What every broker of the config's fleet published (etcd coordination only). */
async function published(config: Config): Promise<HostInfo[]> {
  if (config.broker.coordination.type === 'local') {
    throw new UsageError(`${config.file}: broker.coordination is local: this host has no fleet (set coordination: { type: etcd, ... })`);
  }
  const coordination = await coordinationFor(config);
  try {
    return await coordination.fleet();
  } finally {
    await coordination.close();
  }
}

async function fleet(args: string[]): Promise<number> {
  const v = options('fleet', args);
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
  const v = options('domains', args);
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

/**
 * A new node key pair (node:crypto, OpenSSH formats), written to DIR/NODE
 * (0600, never over an existing file) and DIR/NODE.pub; prints the
 * clusters.yaml entry and the node's plugin parameters. The config is only read.
 */
async function keygen(args: string[]): Promise<number> {
  const v = options('keygen', args);
  if (typeof v.cluster !== 'string' || typeof v.node !== 'string') throw new UsageError('--cluster and --node are required');
  const bad = nameProblem(v.cluster) ?? nameProblem(v.node);
  if (bad) throw new UsageError(bad);
  if (v.force && !v['fence-virt']) throw new UsageError('--force is for --fence-virt keys (an SSH key file is never overwritten)');
  const config = configFrom(v);
  if (v['fence-virt']) return keygenFenceVirt(config, v.cluster, v.node, v.force === true);
  const cluster = config.clusters[v.cluster];
  // Checked before anything is written, so a second run is never refused for the first one's files.
  const fingerprint = hostFingerprint(config);
  if (!fingerprint) throw new UsageError(`${noHostKey(config)}; nothing written`);
  const dir = resolve(String(v.out));
  outDir(dir);
  const priv = join(dir, v.node);
  if (existsSync(priv) || existsSync(`${priv}.pub`)) throw new UsageError(`${priv} or ${priv}.pub exists; not overwritten`);
  const pair = generateEd25519(`${v.cluster}/${v.node}`);
  writeFileSync(priv, pair.private, { mode: 0o600, flag: 'wx' });
  writeFileSync(`${priv}.pub`, pair.public + '\n', { mode: 0o644, flag: 'wx' });

  const { host, port } = config.broker.listen;
  const address = host === '0.0.0.0' || host === '::' ? `THIS-HOST:${port}` : brokerAddress(host, port);
  out(`wrote ${priv} (private, 0600) and ${priv}.pub`);
  // A node that has a key (say, the example config's placeholder) gets a new one: its old key works until the reload.
  if (cluster?.nodes[v.node]) out(`\nin ${config.file}, replace the key of clusters.${v.cluster}.nodes.${v.node} (the old key is refused from the reload on):`);
  else out(`\nadd to ${config.file}, under clusters.${v.cluster}.nodes${cluster ? '' : ` (cluster ${v.cluster} is not there yet: add it with its domains)`}:`);
  const domain = cluster?.nodes[v.node]?.domain;
  out(`      ${v.node}: { key: "${pair.public}"${domain && domain !== v.node ? `, domain: ${domain}` : ''} }${cluster && !domain && !cluster.domains.includes(v.node) ? `   # add domain: NAME if the node's domain is not called ${v.node}` : ''}`);
  out(`\nthen \`fencectl check\` and reload the broker (SIGHUP). On the node, install ${priv} as ${NODE_KEY_PATH} (0600) and use:`);
  out(`  ip=${address}\n  identity_file=${NODE_KEY_PATH}\n  host_key_fingerprint=${fingerprint}`);
  return 0;
}

/** Where the stock clients read their key on the node (their -k default). */
const FENCE_VIRT_NODE_KEY = '/etc/cluster/fence_xvm.key';

/**
 * A node's fence_virt key: KEY_BYTES random bytes at KEY_DIR/CLUSTER/NODE.key
 * (0600, directories 0700). The node must be in the config (the key file is
 * only read for configured nodes); an existing key is replaced only with
 * --force. Prints what goes on the node and the command to test it.
 */
function keygenFenceVirt(config: Config, cluster: string, node: string, force: boolean): number {
  const fv = config.broker.fenceVirt;
  if (!fv) throw new UsageError(`broker.fence_virt is not in ${config.file}: add it (with key_dir) first`);
  const keyDir = fv.keyDir;
  // A door with channels alone has no keys: the channel proves the domain.
  if (keyDir === undefined) throw new UsageError(`broker.fence_virt has no key_dir in ${config.file}: add one first (keys serve the TCP and multicast clients; a serial channel needs none)`);
  const n = config.clusters[cluster]?.nodes[node];
  if (!n) throw new UsageError(`${cluster}/${node} is not a node of ${config.file}: add it under clusters.${cluster}.nodes first (a key file of an unknown node is never read)`);
  if (!force && existsSync(keyPath(keyDir, cluster, node))) throw new UsageError(`${keyPath(keyDir, cluster, node)} exists; pass --force to replace it (the node's copy must then be replaced too)`);
  const written = writeNodeKey(keyDir, cluster, node, force);
  out(`${written.replaced ? 'replaced' : 'wrote'} ${written.file} (${KEY_BYTES} random bytes, 0600; folders 0700): ${written.fingerprint}`);
  out(`\nreload the broker (fencectl reload, or SIGHUP)${written.replaced ? ': the old key is refused from then on' : ''}. On node ${node}, install the key as ${FENCE_VIRT_NODE_KEY} (root, 0600), copied over a channel you trust, e.g.:`);
  out(`  scp ${written.file} root@${node}:${FENCE_VIRT_NODE_KEY} && ssh root@${node} chmod 600 ${FENCE_VIRT_NODE_KEY}`);
  const flags = `-k ${FENCE_VIRT_NODE_KEY} -c ${fv.hash} -C ${fv.challengeHash}`;
  const tcp = fv.listen[0];
  const client = tcp ? `fence_virt -T ${tcp.host === '0.0.0.0' || tcp.host === '::' ? 'THIS-HOST' : tcp.host} -p ${tcp.port}` : 'fence_xvm';
  out('\nthen test it from the node: the domains it may act on, and its own domain\'s state:');
  out(`  ${client} ${flags} -o list`);
  out(`  ${client} ${flags} -H ${n.domain} -o status`);
  return 0;
}

/** keygen's --out: created (0700: it will hold private keys) when missing; else why it cannot be used. */
function outDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new Error(`--out ${dir}: cannot create the folder: ${why}`, { cause: e });
  }
  if (!statSync(dir).isDirectory()) throw new Error(`--out ${dir} exists and is not a folder`);
}

/** The host key's public half (`type base64`) and fingerprint, or undefined before the broker first started. */
function hostPublic(config: Config): { line: string; fingerprint: string } | undefined {
  if (!existsSync(config.broker.hostKey)) return undefined;
  const parsed = ssh2.utils.parseKey(readFileSync(config.broker.hostKey));
  if (parsed instanceof Error || Array.isArray(parsed)) return undefined;
  return { line: `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`, fingerprint: fingerprintOf(parsed.getPublicSSH()) };
}

/** The host key's fingerprint, or undefined when there is no host key yet. */
const hostFingerprint = (config: Config): string | undefined => hostPublic(config)?.fingerprint;

/** Why there is no pin to print: install.sh creates the host key, as does the broker's first start. */
const noHostKey = (config: Config): string =>
  `host key ${config.broker.hostKey} does not exist: install.sh creates it, as does the broker's first start`;

/**
 * The cluster's ha.cf line for Heartbeat v1: every parameter of the plugin,
 * positionally, in getconfignames order (README "Use with Heartbeat"). The sh
 * face also needs the host key itself, as a known_hosts line in a file beside
 * the node's key (its known_hosts_file default): Heartbeat's positions are
 * fixed, so it is no eighth value.
 */
async function heartbeat(args: string[]): Promise<number> {
  const v = options('heartbeat', args);
  if (typeof v.cluster !== 'string') throw new UsageError('--cluster is required');
  const config = configFrom(v);
  if (!config.clusters[v.cluster]) throw new UsageError(`--cluster: no cluster ${v.cluster} in ${config.file}`);
  const identity = String(v['identity-file']);
  if (/\s/.test(identity) || !identity.startsWith('/')) throw new UsageError('--identity-file: an absolute path without spaces (stonith_host values are separated by spaces)');
  const key = hostPublic(config);
  if (!key) throw new UsageError(noHostKey(config));
  const { port } = config.broker.listen;
  const host = nodesReach(config, str(v, 'ip'));
  const line = `stonith_host * external/fence-broker ${host} ${port} fence ${identity} ${key.fingerprint} 45 5`;
  if (v.face === 'node') {
    out(line);
    return 0;
  }
  // The faces read only the key; the host field lets `ssh -o UserKnownHostsFile=` use the file by hand too.
  out(`# /etc/ha.d/ha.cf, every node (install the sh face: fence_broker --install --face sh, or copy external/fence-broker.sh):\n${line}`);
  out(`# ${identity}.known_hosts, every node (the sh face's pinned host key):\n${port === 22 ? host : `[${host}]:${port}`} ${key.line}`);
  return 0;
}

/**
 * The tenant's Pacemaker fencing (admin/pacemaker.ts: one device per node,
 * kept off the node it fences) as a CIB (default), a pcs script or crmsh
 * configure syntax. Only the options are checked here.
 */
async function pacemaker(args: string[]): Promise<number> {
  const v = options('pacemaker', args);
  if (typeof v.cluster !== 'string') throw new UsageError('--cluster is required');
  const format = String(v.format);
  if (!isFormat(format)) throw new UsageError(`--format: ${JSON.stringify(format)} is not one of ${FORMATS.join(', ')}`);
  const agent = String(v.agent);
  if (!isAgent(agent)) throw new UsageError(`--agent: ${JSON.stringify(agent)} is not one of fence_broker, fence_xvm, fence_virt`);
  const identity = String(v['identity-file']);
  const keyFile = typeof v['key-file'] === 'string' ? v['key-file'] : FENCE_VIRT_NODE_KEY;
  // The nodes read it as a path; a line break would also end a crmsh statement.
  const pathProblem = (opt: string, p: string) => (!p.startsWith('/') || /[\x00-\x1f\x7f]/.test(p) ? `${opt}: ${JSON.stringify(p)} is not an absolute path without control characters` : undefined);
  const badPath = agent === 'fence_broker' ? pathProblem('--identity-file', identity) : pathProblem('--key-file', keyFile);
  if (badPath) throw new UsageError(badPath);
  const config = configFrom(v);
  const cluster = config.clusters[v.cluster];
  if (!cluster) throw new UsageError(`--cluster: no cluster ${v.cluster} in ${config.file}`);
  if (typeof v.serial === 'string') {
    if (agent !== 'fence_virt') throw new UsageError(`--serial is for --agent fence_virt (the stock client's serial mode), not ${agent}`);
    out(render(tenantFenceVirtSerial(cluster, serialWhere(config, v.serial)), format));
    return 0;
  }
  if (agent !== 'fence_broker') {
    // The fence_virt door: where the nodes send to comes from broker.fence_virt; no host key involved.
    const ends = fenceVirtEndpoints(config.broker.fenceVirt, agent);
    if (typeof ends === 'string') throw new UsageError(ends);
    out(render(tenantFenceVirt(cluster, agent, keyFile, ends), format));
    return 0;
  }
  const fingerprint = hostFingerprint(config);
  if (!fingerprint) throw new UsageError(noHostKey(config));
  const host = nodesReach(config, str(v, 'ip'));
  // A domain no node stands for gets no device: say so, or the admin finds out at the first fence.
  for (const d of domainsWithoutNode(cluster)) {
    err(`fencectl pacemaker: skipped domain ${d}: no node of cluster ${cluster.name} with a key has it as its own domain, so no device fences it (add its node with \`fencectl keygen --cluster ${cluster.name} --node ${d}\`)`);
  }
  out(render(tenantFencing(config, cluster, fingerprint, identity, host), format));
  return 0;
}

/**
 * What the serial devices name, by the channel door's mode: the guest's serial
 * port, or in vmchannel mode the guestfwd address (a DEVICE is then no use).
 */
function serialWhere(config: Config, device: string): { device: string } | { address: string; port: number } {
  const channels = channelsOf(config);
  // The nodes read it as a path; a line break would also end a crmsh statement.
  if (!/^\/dev\/[A-Za-z0-9_./-]+$/.test(device) || device.includes('..')) throw new UsageError(`--serial: ${JSON.stringify(device)} is not a device path under /dev (the guest's serial port, e.g. ${SERIAL_DEVICE})`);
  if (channels.mode === 'serial') return { device };
  if (device !== SERIAL_DEVICE) throw new UsageError(`--serial ${device}: broker.fence_virt.channels.mode is vmchannel, where the guests connect to ${CHANNEL_ADDRESS}:${CHANNEL_PORT}, not to a serial device; give --serial alone`);
  return { address: CHANNEL_ADDRESS, port: CHANNEL_PORT };
}

/** broker.fence_virt.channels, or a usage error located where it would go. */
function channelsOf(config: Config): FenceVirtChannelsConfig {
  const channels = config.broker.fenceVirt?.channels;
  if (channels) return channels;
  const at = config.broker.fenceVirt ? ['broker', 'fence_virt'] : ['broker'];
  throw new UsageError(formatLocated(locateIn(config.file, at, `broker.fence_virt.channels is not configured: the serial channel door is off (docs/doors/fence-virt.md)`)));
}

/**
 * A node's serial channel (admin/channel.ts): the domain XML snippet, the
 * virsh line that attaches it, the guest's fence_virt line and what to check
 * next; with --xml the snippet alone. The node is found by name, in --cluster
 * or in whichever one cluster has it.
 */
async function channel(args: string[]): Promise<number> {
  const { values: v, operands } = parseCommandLine(specOf('channel'), args);
  const name = operands[0] as string;
  const badNode = nameProblem(name);
  if (badNode) throw new UsageError(`NODE: ${badNode}`);
  const badCluster = typeof v.cluster === 'string' ? nameProblem(v.cluster) : undefined;
  if (badCluster) throw new UsageError(`--cluster: ${badCluster}`);
  const config = configFrom(v);
  const channels = channelsOf(config);
  const clusters = typeof v.cluster === 'string' ? [config.clusters[v.cluster]] : Object.values(config.clusters);
  if (clusters[0] === undefined) throw new UsageError(formatLocated(locateIn(config.file, ['clusters'], `--cluster: no cluster ${v.cluster} under clusters`)));
  const owners = clusters.filter((c) => c?.nodes[name] !== undefined) as ClusterConfig[];
  if (owners.length === 0) {
    const where = typeof v.cluster === 'string' ? `clusters.${v.cluster}.nodes` : 'the nodes of any cluster';
    throw new UsageError(formatLocated(locateIn(config.file, typeof v.cluster === 'string' ? ['clusters', v.cluster, 'nodes'] : ['clusters'], `no node ${name} in ${where}`)));
  }
  if (owners.length > 1) throw new UsageError(`node ${name} is in clusters ${owners.map((c) => c.name).join(', ')}: say which with --cluster`);
  const cluster = owners[0] as ClusterConfig;
  const node = cluster.nodes[name] as NodeConfig;
  const socket = socketPath(channels.dir, node.domain);
  const tooLong = socketPathProblem(socket);
  if (tooLong) throw new UsageError(formatLocated(locateIn(config.file, ['broker', 'fence_virt', 'channels', 'dir'], tooLong)));
  if (v.xml) {
    out(channelXml(channels.mode, socket));
    return 0;
  }
  const ts = config.broker.toolstack;
  // The crosscheck allows channels only with virsh; the fallback keeps the text whole all the same.
  const virsh = ts.type === 'virsh' ? { command: ts.command ?? 'virsh', uri: ts.uri } : { command: 'virsh', uri: 'qemu:///system' };
  out(channelText({ cluster: cluster.name, node: name, domain: node.domain, mode: channels.mode, socket, device: SERIAL_DEVICE }, virsh, existsSync(channels.dir), args.some((a) => a === '--config' || a.startsWith('--config=')) ? String(v.config) : undefined));
  return 0;
}

/**
 * The broker's address as the nodes reach it: --ip, else broker.listen's
 * host, which a wildcard (0.0.0.0, ::) is not. --ip is checked as the nodes'
 * plugin will read it (a name or an address, no port: the port is listen's).
 */
function nodesReach(config: Config, ip: string | undefined): string {
  const { host } = config.broker.listen;
  if (ip !== undefined) {
    const bare = ip.replace(/^\[(.*)\]$/, '$1');
    // A leading dash would be an option to the sh face's ssh.
    if (isIP(bare) === 0 && !/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(bare)) throw new UsageError(`--ip: ${JSON.stringify(ip)} is not a host name or an IP address (the port is broker.listen's)`);
    if (bare === '0.0.0.0' || bare === '::') throw new UsageError(`--ip: ${bare} is a wildcard; give the address the nodes reach`);
    return bare;
  }
  if (host === '0.0.0.0' || host === '::') throw new UsageError(`broker.listen is ${host}: give the nodes an address they reach with --ip ADDR (or set listen to it)`);
  return host;
}

/** The host key's pin, as the nodes' host_key_fingerprint. */
async function fingerprint(args: string[]): Promise<number> {
  const config = configFrom(options('fingerprint', args));
  const fp = hostFingerprint(config);
  if (!fp) throw new UsageError(noHostKey(config));
  out(fp);
  return 0;
}

/** status: what the running daemon says about itself (admin/status.ts); exit 1 when it does not answer. */
async function status(args: string[]): Promise<number> {
  const v = options('status', args);
  const socket = str(v, 'socket');
  const report = await askStatus(socket ?? configFrom(v).broker.statusSocket);
  out(v.json ? JSON.stringify(report) : formatStatus(report));
  return 0;
}

const handlers: Record<string, (args: string[]) => Promise<number>> = { check, reload, explain, 'diff-policy': diffPolicy, domains, fleet, keygen, fingerprint, heartbeat, pacemaker, channel, status };

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') {
    const about = rest[0] === undefined ? undefined : live(FENCECTL.commands).find((c) => c.name === rest[0]);
    out(about ? commandHelp('fencectl', about) : programHelp(FENCECTL));
    return 0;
  }
  if (cmd === '-V' || cmd === '--version') {
    out(versionText('fencectl'));
    return 0;
  }
  // An error prints itself and where to look: never the whole usage.
  if (cmd === undefined) {
    err(`fencectl: no command given\n${tryHelp('fencectl')}`);
    return 2;
  }
  const spec = live(FENCECTL.commands).find((c) => c.name === cmd);
  const run = handlers[cmd];
  if (!spec || !run) {
    err(`fencectl: unknown command ${JSON.stringify(cmd)}\n${tryHelp('fencectl')}`);
    return 2;
  }
  if (asksHelp(rest)) {
    out(commandHelp('fencectl', spec));
    return 0;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`fencectl ${cmd}: ${e.message}\n${tryHelp('fencectl', cmd)}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err(e.message);
      return cmd === 'check' ? 1 : 2;
    }
    err(`fencectl ${cmd}: ${(e as Error).message}`);
    // explain's 1 means "denied"; any other failure there is a config/setup error.
    return cmd === 'explain' || cmd === 'diff-policy' ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
