// Face 2: a fence-agents agent (Pacemaker's stonith:fence_* class). Options as
// stdin name=value lines when there are no arguments, else getopt-style flags.
// Exit codes as fence-agents: 0 success; 1 failure; status 0 on, 2 off, 1 failure.
import { parseArgs } from 'node:util';
import { OptionError } from './client.js';
import { run } from './fencing.js';
import { escapeXml } from './xml.js';
import { OPTIONS, toClientOptions, validate, type OptionValues } from './options.js';

const ACTIONS = ['on', 'off', 'reboot', 'status', 'list', 'list-status', 'monitor', 'metadata', 'validate-all'] as const;
type Action = (typeof ACTIONS)[number];

/** Names fence-agents accepts for the same option (stdin and flags). */
const ALIASES: Record<string, string> = { port: 'plug', ipaddr: 'ip', login: 'username', 'meta-data': 'metadata', power_timeout: 'broker_timeout', 'power-timeout': 'broker_timeout' };
/** Sent by Pacemaker; not ours to use. */
const SILENT = new Set(['nodename']);

export function metadataXml(): string {
  const param = (name: string, getopt: string, type: string, required: boolean, shortdesc: string, extra = '', dflt?: string) =>
    `\t<parameter name="${name}" unique="0" required="${required ? 1 : 0}"${extra}>\n` +
    `\t\t<getopt mixed="${escapeXml(getopt)}" />\n` +
    `\t\t<content type="${type}"${dflt === undefined ? '' : ` default="${escapeXml(dflt)}"`} />\n` +
    `\t\t<shortdesc lang="en">${escapeXml(shortdesc)}</shortdesc>\n\t</parameter>`;
  const plugDesc = 'Domain (virtual machine) to act on, as the broker knows it';
  const params = [
    param('action', '-o, --action=[action]', 'string', true, 'Fencing action', '', 'reboot'),
    param('plug', '-n, --plug=[id]', 'string', true, plugDesc, ' obsoletes="port"'),
    param('port', '-n, --plug=[id]', 'string', true, plugDesc, ' deprecated="1"'),
    ...OPTIONS.map((o) => param(o.name, o.getopt, o.type, o.required, o.shortdesc, '', o.default)),
  ];
  return (
    '<?xml version="1.0" ?>\n' +
    '<resource-agent name="fence_broker" shortdesc="Fence agent for virtual machines behind fence-broker">\n' +
    '<longdesc>fence_broker asks fence-broker, a daemon on the virtualization host reached over SSH with this node\'s key, to power a domain off, on or reset. The broker checks a policy (a cluster may fence only its own domains), drives xl or virsh, and reports success only once the domain is confirmed off. With several hosts, every broker is asked.</longdesc>\n' +
    '<vendor-url>https://fence-broker.invalid/</vendor-url>\n' +
    `<parameters>\n${params.join('\n')}\n</parameters>\n` +
    '<actions>\n' +
    ACTIONS.map((a) => `\t<action name="${a}"${a === 'on' ? ' automatic="0"' : ''} />`).join('\n') +
    '\n</actions>\n</resource-agent>\n'
  );
}

/** stdin name=value lines: # comments and blank lines skipped, last duplicate wins. */
export function parseStdin(text: string, warn: (s: string) => void): OptionValues {
  const v: OptionValues = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 1) {
      warn(`WARNING: Parse error: Ignoring line without name=value: ${JSON.stringify(line.slice(0, 80))}\n`);
      continue;
    }
    let name = line.slice(0, eq).trim().replace(/-/g, '_');
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    name = ALIASES[name] ?? ALIASES[name.replace(/_/g, '-')] ?? name;
    if (SILENT.has(name)) continue;
    if (name !== 'action' && name !== 'plug' && !OPTIONS.some((o) => o.name === name)) {
      warn(`WARNING: Parse error: Ignoring unknown option '${name}=${value}'\n`);
      continue;
    }
    v[name] = value;
  }
  return v;
}

function parseFlags(argv: string[]): OptionValues {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      action: { type: 'string', short: 'o' },
      plug: { type: 'string', short: 'n' },
      port: { type: 'string' },
      ip: { type: 'string', short: 'a' },
      ipport: { type: 'string', short: 'u' },
      username: { type: 'string', short: 'l' },
      'identity-file': { type: 'string', short: 'k' },
      'host-key-fingerprint': { type: 'string' },
      'broker-timeout': { type: 'string' },
      'power-timeout': { type: 'string' },
      'login-timeout': { type: 'string' },
    },
  });
  const v: OptionValues = {};
  for (const [k, val] of Object.entries(values)) {
    const name = ALIASES[k] ?? k.replace(/-/g, '_');
    v[name] = String(val);
  }
  return v;
}

type Write = (s: string) => void;

export async function fenceAgents(argv: string[], stdin: () => Promise<string>, out: Write, err: Write): Promise<number> {
  let v: OptionValues;
  try {
    v = argv.length ? parseFlags(argv) : parseStdin(await stdin(), err);
  } catch (e) {
    err(`Failed: ${(e as Error).message}\n`);
    return 1;
  }
  const action = ((v.action ?? 'reboot').toLowerCase().replace(/^meta-data$/, 'metadata')) as Action;
  if (!ACTIONS.includes(action)) {
    err(`Failed: Unrecognised action '${v.action}'\n`);
    return 1;
  }
  if (action === 'metadata') {
    out(metadataXml());
    return 0;
  }
  // validate-all checks the options as the default action (reboot) would need them.
  const needsPlug = ['on', 'off', 'reboot', 'status', 'validate-all'].includes(action);
  if (action === 'validate-all') {
    const problems = validate(v);
    if (needsPlug && !v.plug) problems.push('missing option plug');
    for (const p of problems) err(`Failed: ${p}\n`);
    return problems.length ? 1 : 0;
  }
  let options;
  try {
    options = toClientOptions(v);
  } catch (e) {
    err(`Failed: ${e instanceof OptionError ? e.message : String(e)}\n`);
    return 1;
  }
  if (needsPlug && !v.plug) {
    err('Failed: You have to enter plug number or machine identification\n');
    return 1;
  }

  switch (action) {
    case 'monitor': {
      const r = await run(options, 'list');
      if (!r.ok) err(`Failed: ${r.message}\n`);
      return r.ok ? 0 : 1;
    }
    case 'list':
    case 'list-status': {
      const r = await run(options, 'list');
      if (!r.ok) {
        err(`Failed: ${r.message}\n`);
        return 1;
      }
      // One list request carries every domain's state: no request per domain.
      // As fence-agents prints it: on / off, else UNKNOWN.
      const shown = (d: string) => (r.states?.[d] === 'on' || r.states?.[d] === 'off' ? r.states[d] : 'UNKNOWN');
      for (const d of r.domains ?? []) out(action === 'list' ? `${d},\n` : `${d},,${shown(d)}\n`);
      return 0;
    }
    case 'status': {
      const r = await run(options, 'status', v.plug);
      if (!r.ok || r.state === 'unknown') {
        err(`Failed: Unable to obtain correct plug status or plug is not available: ${r.message}\n`);
        return 1;
      }
      out(`Status: ${r.state.toUpperCase()}\n`);
      return r.state === 'on' ? 0 : 2;
    }
    default: {
      const verb = action === 'reboot' ? 'reset' : action;
      const r = await run(options, verb as 'on' | 'off' | 'reset', v.plug);
      if (r.ok) out(`Success: ${r.message}\n`);
      else err(`Failed: ${r.message}\n`);
      return r.ok ? 0 : 1;
    }
  }
}
