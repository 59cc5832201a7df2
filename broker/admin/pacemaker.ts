// A tenant's Pacemaker fencing (fencectl pacemaker), as one model and three
// ways to load it: a CIB (cibadmin, crm_verify), a pcs script, a crmsh
// `configure` file. Pure: no I/O; the caller reads the config and the host key.
//
// One stonith:fence_broker device per node, each able to fence only that node
// (pcmk_host_list; pcmk_host_map names its domain), and a -INFINITY location
// keeping each device off the node it fences, as the original recipe's clone
// with #uname rules did: a device never depends on the node it is about to kill.
// All three forms give the same primitive and constraint ids, so an admin can
// remove or inspect them by the same names whichever tool loaded them.
//
// The same model serves the stock fence_virt clients (fence_xvm over
// multicast, fence_virt over TCP; issue 19): one device per node again, with
// the node's own key at the same key_file path on every node, so whichever
// node runs a device proves itself with its own key.
//
// Through the serial channel door (issue 20) no key at all: whichever node
// runs a device asks through its own domain's channel, which proves the node.
import type { ClusterConfig, Config } from '../config/types.js';

export const FORMATS = ['cib', 'pcs', 'crm'] as const;
export type Format = (typeof FORMATS)[number];
export const isFormat = (s: string): s is Format => (FORMATS as readonly string[]).includes(s);

export const AGENTS = ['fence_broker', 'fence_xvm', 'fence_virt'] as const;
export type Agent = (typeof AGENTS)[number];
export const isAgent = (s: string): s is Agent => (AGENTS as readonly string[]).includes(s);

/** Device id prefixes: distinct per agent, so an SSH and a fence_virt device of one node can coexist. */
const ID_PREFIX: Record<Agent, string> = { fence_broker: 'fb', fence_xvm: 'fxvm', fence_virt: 'fvirt' };

/** Where fence_xvm and fence_virt send to, and the hashes the broker wants, read from broker.fence_virt. */
export interface FenceVirtEndpoints {
  /** fence_xvm's multicast_address and ipport, when the multicast listener is on. */
  multicast?: { address: string; port: number };
  /** fence_virt's ipaddr and ipport, when a TCP listener is on at an address the nodes reach. */
  tcp?: { host: string; port: number };
  /** The packet hash the clients send (the client's -c), at least the broker's minimum. */
  hash: 'sha256' | 'sha512';
  /** The challenge hash (the client's -C), which the broker is configured with since the packet does not say it. */
  auth: 'sha256' | 'sha512';
}

export interface FencingDevice {
  /** The primitive's id, fb-NODE. */
  id: string;
  /** The node this device fences (and must never run on). */
  node: string;
  /** Instance attributes, in the order the CIB form prints them. */
  params: readonly (readonly [name: string, value: string])[];
  monitor: { interval: string; timeout: string };
}

export interface AvoidNode {
  id: string;
  rsc: string;
  node: string;
  score: '-INFINITY';
}

export interface TenantFencing {
  cluster: string;
  /** The fence agent every device runs (stonith:AGENT). */
  agent: Agent;
  devices: FencingDevice[];
  constraints: AvoidNode[];
}

/** What fencectl reads of broker.fence_virt (config/types.ts FenceVirtConfig). */
export interface FenceVirtView {
  listen: readonly { host: string; port: number }[];
  hash: 'sha256' | 'sha512';
  challengeHash: 'sha256' | 'sha512';
  multicast?: { groups: readonly string[]; port: number } | undefined;
}

const WILDCARD = new Set(['0.0.0.0', '::']);

/**
 * Where the agent's nodes send to, or why the config gives them nowhere:
 * fence_xvm needs the multicast listener (its first group: the IPv4 one when
 * both are joined, which fence_xvm's ip_family=auto then picks), fence_virt a
 * TCP listener on an address the nodes can reach (not a wildcard).
 */
export function fenceVirtEndpoints(fv: FenceVirtView | undefined, agent: 'fence_xvm' | 'fence_virt'): FenceVirtEndpoints | string {
  if (!fv) return `broker.fence_virt is not configured: the fence_virt door is off, so ${agent} has nothing to talk to`;
  const hashes = { hash: fv.hash, auth: fv.challengeHash };
  if (agent === 'fence_xvm') {
    if (!fv.multicast) return 'broker.fence_virt.multicast is not configured: fence_xvm needs the multicast listener';
    const address = fv.multicast.groups.find((g) => !g.includes(':')) ?? fv.multicast.groups[0];
    if (address === undefined) return 'broker.fence_virt.multicast.groups is empty';
    return { multicast: { address, port: fv.multicast.port }, ...hashes };
  }
  const tcp = fv.listen.find((l) => !WILDCARD.has(l.host));
  if (!tcp) {
    return fv.listen.length === 0
      ? 'broker.fence_virt.listen is empty: fence_virt -T needs a TCP listener'
      : `broker.fence_virt.listen has only wildcard addresses (${fv.listen.map((l) => l.host).join(', ')}): give the nodes an address they reach`;
  }
  return { tcp, ...hashes };
}

/** host:port as the plugin's `ip` parses it: an IPv6 host in brackets, or its port would be read as part of it. */
export const brokerAddress = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * The model. The caller has checked what it can explain to the admin
 * (cluster exists, identity file is a path) and gives the host the nodes
 * reach (fencectl's --ip, else listen's).
 */
export function tenantFencing(config: Config, cluster: ClusterConfig, fingerprint: string, identityFile: string, host: string = config.broker.listen.host): TenantFencing {
  const { port } = config.broker.listen;
  const nodes = Object.values(cluster.nodes).sort((a, b) => a.name.localeCompare(b.name));
  return {
    cluster: cluster.name,
    agent: 'fence_broker',
    devices: nodes.map((n) => ({
      id: `fb-${n.name}`,
      node: n.name,
      params: [
        ['ip', brokerAddress(host, port)],
        ['identity_file', identityFile],
        ['host_key_fingerprint', fingerprint],
        ['pcmk_host_list', n.name],
        ['pcmk_host_map', `${n.name}:${n.domain}`],
      ],
      monitor: { interval: '60s', timeout: '60s' },
    })),
    constraints: nodes.map((n) => ({ id: `fb-${n.name}-not-on-${n.name}`, rsc: `fb-${n.name}`, node: n.name, score: '-INFINITY' })),
  };
}

/**
 * The model for fence_xvm (multicast) or fence_virt (TCP): the same devices and
 * constraints, with the agent's own parameters. pcmk_host_map gives the domain
 * as the agent's plug; the caller has checked that the endpoint this agent
 * needs is configured.
 */
export function tenantFenceVirt(cluster: ClusterConfig, agent: 'fence_xvm' | 'fence_virt', keyFile: string, ends: FenceVirtEndpoints): TenantFencing {
  const where: (readonly [string, string])[] = [];
  if (agent === 'fence_xvm') {
    if (!ends.multicast) throw new Error('fence_xvm needs the multicast listener (broker.fence_virt)');
    where.push(['multicast_address', ends.multicast.address], ['ipport', String(ends.multicast.port)]);
  } else {
    if (!ends.tcp) throw new Error('fence_virt needs a TCP listener (broker.fence_virt)');
    where.push(['ipaddr', ends.tcp.host], ['ipport', String(ends.tcp.port)]);
  }
  const nodes = Object.values(cluster.nodes).sort((a, b) => a.name.localeCompare(b.name));
  const prefix = ID_PREFIX[agent];
  return {
    cluster: cluster.name,
    agent,
    devices: nodes.map((n) => ({
      id: `${prefix}-${n.name}`,
      node: n.name,
      params: [
        ...where,
        ['key_file', keyFile],
        ['hash', ends.hash],
        ['auth', ends.auth],
        ['pcmk_host_list', n.name],
        ['pcmk_host_map', `${n.name}:${n.domain}`],
      ],
      monitor: { interval: '60s', timeout: '60s' },
    })),
    constraints: nodes.map((n) => ({ id: `${prefix}-${n.name}-not-on-${n.name}`, rsc: `${prefix}-${n.name}`, node: n.name, score: '-INFINITY' })),
  };
}

/**
 * The model for fence_virt through the nodes' serial channels: in mode serial
 * each device names the guest's serial port (serial_device); in mode vmchannel
 * the guestfwd address and port the channel snippet gives. No key_file: the
 * channel proves who asks. Ids differ from the TCP devices' (fvirt-), so both
 * can be loaded side by side.
 */
export function tenantFenceVirtSerial(cluster: ClusterConfig, where: { device: string } | { address: string; port: number }): TenantFencing {
  const params: (readonly [string, string])[] = 'device' in where ? [['serial_device', where.device]] : [['channel_address', where.address], ['ipport', String(where.port)]];
  const nodes = Object.values(cluster.nodes).sort((a, b) => a.name.localeCompare(b.name));
  return {
    cluster: cluster.name,
    agent: 'fence_virt',
    devices: nodes.map((n) => ({
      id: `fvserial-${n.name}`,
      node: n.name,
      params: [...params, ['pcmk_host_list', n.name], ['pcmk_host_map', `${n.name}:${n.domain}`]],
      monitor: { interval: '60s', timeout: '60s' },
    })),
    constraints: nodes.map((n) => ({ id: `fvserial-${n.name}-not-on-${n.name}`, rsc: `fvserial-${n.name}`, node: n.name, score: '-INFINITY' })),
  };
}

export function render(model: TenantFencing, format: Format): string {
  return { cib: renderCib, pcs: renderPcs, crm: renderCrm }[format](model);
}

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A CIB whose configuration holds only the fencing (nodes come from the
 * cluster itself), so `crm_verify --xml-file` checks it as it is, and its
 * <resources> and <constraints> load into a running cluster with cibadmin.
 * The two-node Pacemaker test loads exactly this text: keep it stable.
 */
export function renderCib(model: TenantFencing): string {
  const resources = model.devices.map(({ id, params, monitor }) => {
    const nvpairs = params.map(([k, val]) => `      <nvpair id="${id}-${k}" name="${k}" value="${xmlAttr(val)}"/>`).join('\n');
    return [
      `<primitive id="${id}" class="stonith" type="${model.agent}">`,
      `    <instance_attributes id="${id}-ia">`,
      nvpairs,
      '    </instance_attributes>',
      `    <operations><op id="${id}-monitor" name="monitor" interval="${monitor.interval}" timeout="${monitor.timeout}"/></operations>`,
      '  </primitive>',
    ].join('\n');
  });
  const constraints = model.constraints.map((c) => `<rsc_location id="${c.id}" rsc="${c.rsc}" node="${c.node}" score="${c.score}"/>`);
  return [
    '<cib crm_feature_set="3.0.0" validate-with="pacemaker-3.0" epoch="1" num_updates="0" admin_epoch="0">',
    '  <configuration>',
    '    <crm_config/>',
    '    <nodes/>',
    `    <resources>\n${resources.map((r) => `      ${r.replace(/\n/g, '\n    ')}`).join('\n')}\n    </resources>`,
    `    <constraints>\n${constraints.map((c) => `      ${c}`).join('\n')}\n    </constraints>`,
    '  </configuration>',
    '  <status/>',
    '</cib>',
  ].join('\n');
}

/** One shell word: as it is when nothing in it is special to sh (globs and tildes are), else single-quoted. */
export const shellWord = (s: string): string => (/^[A-Za-z0-9_./:@%+,=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * A POSIX sh script of pcs commands. pcs has no environment variable for an
 * offline CIB (only -f), so the script maps Pacemaker's own CIB_file onto -f:
 * the same variable crmsh and cibadmin honour, and the way to stage the whole
 * change and push it at once. The location constraints use `location add` with
 * an explicit id (not `avoids`, whose ids pcs makes up) so all three forms name
 * them alike; `--` keeps pcs from reading -INFINITY as options.
 */
export function renderPcs(model: TenantFencing): string {
  const lines = [
    '#!/bin/sh',
    `# Fencing of cluster ${model.cluster} through fence-broker, for pcs (fencectl pacemaker --agent ${model.agent} --format pcs).`,
    `# Run it on a cluster node with ${model.agent} installed: pcs checks each parameter`,
    "# against the agent's metadata. With CIB_file=FILE it changes that CIB file instead",
    '# of the live cluster, e.g. to apply everything at once:',
    '#   pcs cluster cib F && CIB_file=F sh THIS-SCRIPT && pcs cluster cib-push F --config',
    'set -eu',
    'pcs() { command pcs ${CIB_file:+-f "$CIB_file"} "$@"; }',
  ];
  for (const d of model.devices) {
    lines.push(
      `pcs stonith create ${shellWord(d.id)} ${model.agent} \\`,
      ...d.params.map(([k, v]) => `  ${k}=${shellWord(v)} \\`),
      `  op monitor interval=${shellWord(d.monitor.interval)} timeout=${shellWord(d.monitor.timeout)}`,
    );
  }
  for (const c of model.constraints) lines.push(`pcs constraint location add ${[c.id, c.rsc, c.node].map(shellWord).join(' ')} -- ${c.score}`);
  return lines.join('\n');
}

/**
 * crmsh reads values with shell-like (shlex) rules: in double quotes only
 * `\` and `"` need a backslash. Lines are its statements, so a line break or
 * other control character in a value cannot be written at all.
 */
export function crmValue(s: string): string {
  const bad = /[\x00-\x1f\x7f]/.exec(s);
  if (bad) throw new Error(`crm format: value ${JSON.stringify(s)} holds control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')}, which crmsh cannot read`);
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

/**
 * crmsh `configure` syntax, for `crm configure load update FILE`. No comments:
 * crmsh would store them in the CIB as XML comments (and refuses any with "--").
 */
export function renderCrm(model: TenantFencing): string {
  const lines: string[] = [];
  for (const d of model.devices) {
    lines.push(
      `primitive ${d.id} stonith:${model.agent} \\`,
      `\tparams ${d.params.map(([k, v]) => `${k}=${crmValue(v)}`).join(' ')} \\`,
      `\top monitor interval=${crmValue(d.monitor.interval)} timeout=${crmValue(d.monitor.timeout)}`,
    );
  }
  // Ids and node names pass the config's name pattern: nothing in them for crmsh to misread.
  for (const c of model.constraints) lines.push(`location ${c.id} ${c.rsc} -inf: ${c.node}`);
  return lines.join('\n');
}
