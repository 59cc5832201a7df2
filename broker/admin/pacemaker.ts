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
import type { ClusterConfig, Config } from '../config/types.js';

export const FORMATS = ['cib', 'pcs', 'crm'] as const;
export type Format = (typeof FORMATS)[number];
export const isFormat = (s: string): s is Format => (FORMATS as readonly string[]).includes(s);

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
  devices: FencingDevice[];
  constraints: AvoidNode[];
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
      `<primitive id="${id}" class="stonith" type="fence_broker">`,
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
    `# Fencing of cluster ${model.cluster} through fence-broker, for pcs (fencectl pacemaker --format pcs).`,
    '# Run it on a cluster node with fence_broker installed: pcs checks each parameter',
    "# against the agent's metadata. With CIB_file=FILE it changes that CIB file instead",
    '# of the live cluster, e.g. to apply everything at once:',
    '#   pcs cluster cib F && CIB_file=F sh THIS-SCRIPT && pcs cluster cib-push F --config',
    'set -eu',
    'pcs() { command pcs ${CIB_file:+-f "$CIB_file"} "$@"; }',
  ];
  for (const d of model.devices) {
    lines.push(
      `pcs stonith create ${shellWord(d.id)} fence_broker \\`,
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
      `primitive ${d.id} stonith:fence_broker \\`,
      `\tparams ${d.params.map(([k, v]) => `${k}=${crmValue(v)}`).join(' ')} \\`,
      `\top monitor interval=${crmValue(d.monitor.interval)} timeout=${crmValue(d.monitor.timeout)}`,
    );
  }
  // Ids and node names pass the config's name pattern: nothing in them for crmsh to misread.
  for (const c of model.constraints) lines.push(`location ${c.id} ${c.rsc} -inf: ${c.node}`);
  return lines.join('\n');
}
