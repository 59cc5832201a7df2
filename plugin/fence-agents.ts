// Face 2: a fence-agents agent (Pacemaker's stonith:fence_* class). Options as
// stdin name=value lines when there are no arguments, else getopt-style flags;
// both, the metadata and --help come from the one table in options.ts.
// Exit codes as fence-agents: 0 success; 1 failure; status 0 on, 2 off, 1 failure.
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { OptionError } from './client.js';
import { run, type Outcome } from './fencing.js';
import { escapeXml } from './xml.js';
import { helpText, isTrue, metadataParameters, optionOfFlag, parseArgsOptions, STDIN_NAMES, toAgentOptions, toClientOptions, validate, type OptionValues } from './options.js';

declare const FENCE_BROKER_VERSION: string | undefined;
/** The release's version: put into the bundle by its build (scripts/build-plugin.mjs, from package.json). */
export const VERSION = typeof FENCE_BROKER_VERSION === 'string' ? FENCE_BROKER_VERSION : 'unknown (not the built bundle)';

export const ACTIONS = ['on', 'off', 'reboot', 'status', 'list', 'list-status', 'monitor', 'metadata', 'validate-all'] as const;
type Action = (typeof ACTIONS)[number];

/** Sent by Pacemaker; not ours to use. */
const SILENT = new Set(['nodename']);

/** The agent's descriptions, in the metadata and its man page (fence_broker(8)). */
export const AGENT_SHORTDESC = 'Fence agent for virtual machines behind fence-broker';
export const AGENT_LONGDESC = "fence_broker asks fence-broker, a daemon on the virtualization host reached over SSH with this node's key, to power a domain off, on or reset. The broker checks a policy (a cluster may fence only its own domains), drives xl or virsh, and reports success only once the domain is confirmed off. With several hosts, every broker is asked.";

export function metadataXml(): string {
  return (
    '<?xml version="1.0" ?>\n' +
    `<resource-agent name="fence_broker" shortdesc="${escapeXml(AGENT_SHORTDESC)}">\n` +
    `<longdesc>${escapeXml(AGENT_LONGDESC)}</longdesc>\n` +
    '<vendor-url>https://fence-broker.invalid/</vendor-url>\n' +
    `<parameters>\n${metadataParameters(escapeXml).join('\n')}\n</parameters>\n` +
    '<actions>\n' +
    ACTIONS.map((a) => `\t<action name="${a}"${a === 'on' ? ' automatic="0"' : ''} />`).join('\n') +
    '\n</actions>\n</resource-agent>\n'
  );
}

/** stdin name=value lines: # comments and blank lines skipped, last duplicate wins; names and aliases from the table. */
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
    const name = line.slice(0, eq).trim().replace(/-/g, '_');
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    if (SILENT.has(name)) continue;
    const spec = STDIN_NAMES.get(name);
    if (!spec) {
      warn(`WARNING: Parse error: Ignoring unknown option '${name}=${value}'\n`);
      continue;
    }
    v[spec.name] = value;
  }
  return v;
}

function parseFlags(argv: string[]): OptionValues {
  const { values } = parseArgs({ args: argv, strict: true, options: parseArgsOptions() });
  const v: OptionValues = {};
  for (const [flag, val] of Object.entries(values)) {
    const name = optionOfFlag(flag);
    if (name) v[name] = val === true ? '1' : String(val);
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
  if (isTrue(v.help)) {
    out(helpText('fence_broker'));
    return 0;
  }
  if (isTrue(v.version)) {
    out(`${VERSION}\n`);
    return 0;
  }
  // Verbose and debug_file: each step on stderr and/or appended to the file.
  const debug = (s: string) => {
    if (isTrue(v.verbose)) err(s);
    if (v.debug_file) {
      try {
        appendFileSync(v.debug_file, `${new Date().toISOString()} ${s}`);
      } catch {
        // A debug file that cannot be written must not fail a fence.
      }
    }
  };
  const say = (s: string) => {
    if (!isTrue(v.quiet)) out(s);
    debug(s);
  };
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
  let agent;
  try {
    options = toClientOptions(v);
    agent = toAgentOptions(v);
  } catch (e) {
    err(`Failed: ${e instanceof OptionError ? e.message : String(e)}\n`);
    return 1;
  }
  if (needsPlug && !v.plug) {
    err('Failed: You have to enter plug number or machine identification\n');
    return 1;
  }
  if (v.plug && v.plug.includes(v.plug_separator ?? ',')) {
    err('Failed: fence_broker acts on one plug at a time\n');
    return 1;
  }
  debug(`fence_broker ${action}${v.plug ? ` ${v.plug}` : ''} via ${options.brokers.map((b) => `${b.host}:${b.port}`).join(', ')}\n`);

  switch (action) {
    case 'monitor': {
      const r = await run(options, 'list');
      debug(`monitor: ${r.message}\n`);
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
      const sep = agent.separator;
      const shown = (d: string) => (r.states?.[d] === 'on' || r.states?.[d] === 'off' ? r.states[d] : 'UNKNOWN');
      for (const d of r.domains ?? []) out(action === 'list' ? `${d}${sep}\n` : `${d}${sep}${sep}${shown(d)}\n`);
      return 0;
    }
    case 'status': {
      const r = await run(options, 'status', v.plug);
      debug(`status: ${r.message}\n`);
      if (!r.ok || r.state === 'unknown') {
        err(`Failed: Unable to obtain correct plug status or plug is not available: ${r.message}\n`);
        return 1;
      }
      say(`Status: ${r.state.toUpperCase()}\n`);
      return r.state === 'on' ? 0 : 2;
    }
    default: {
      // fence-agents' delay: only before the actions that take a node away.
      if (agent.delayMs > 0 && (action === 'off' || action === 'reboot')) {
        debug(`delay: waiting ${agent.delayMs / 1000} s before ${action}\n`);
        await sleep(agent.delayMs);
      }
      const verb = action === 'reboot' ? 'reset' : action;
      const attempts = action === 'on' ? agent.retryOn : 1;
      let r: Outcome = { ok: false, state: 'unknown', message: 'not tried' };
      for (let i = 1; i <= attempts && !r.ok; i++) {
        r = await run(options, verb as 'on' | 'off' | 'reset', v.plug);
        debug(`${verb} attempt ${i}: ${r.message}\n`);
      }
      if (r.ok && agent.powerWaitMs > 0) await sleep(agent.powerWaitMs);
      if (r.ok) say(`Success: ${r.message}\n`);
      else err(`Failed: ${r.message}\n`);
      return r.ok ? 0 : 1;
    }
  }
}
