// Face 1: cluster-glue's external STONITH plugin (Heartbeat; Pacemaker's
// stonith:external/* through fence_legacy). `<plugin> VERB [host]`, options in
// environment variables named after the parameters. cluster-glue runs plugins
// through `sh -c` with the host unquoted and lower-cased, so the host is checked
// here against the name pattern and matched back to the domain's real case.
import { OptionError } from './client.js';
import { run, type Outcome } from './fencing.js';
import { escapeXml } from './xml.js';
import { reservedDomainProblem } from '../common/names.js';
import { CLUSTER_GLUE_OPTIONS, CONFIG_NAMES, OPTIONS, toClientOptions, type OptionValues } from './options.js';

/** The `<parameters>` fragment stonith wraps into its metadata. */
export function parametersXml(): string {
  const params = CLUSTER_GLUE_OPTIONS.map(
    (o) =>
      `<parameter name="${o.name}" unique="0" required="${o.required ? 1 : 0}">\n` +
      `<content type="${o.type === 'integer' ? 'integer' : 'string'}"${o.default ? ` default="${escapeXml(o.default)}"` : ''} />\n` +
      `<shortdesc lang="en">${escapeXml(o.name)}</shortdesc>\n<longdesc lang="en">${escapeXml(o.shortdesc)}</longdesc>\n</parameter>`,
  );
  return `<parameters>\n${params.join('\n')}\n</parameters>\n`;
}

export const INFO: Record<string, string> = {
  'getinfo-devid': 'fence-broker',
  'getinfo-devname': 'fence-broker virtualization host fencing switch',
  'getinfo-devdescr':
    'Fences virtual machines through fence-broker, a daemon on the virtualization host that checks a Rego policy (a cluster may fence only its own domains) and powers domains off with xl or virsh, verified.',
  'getinfo-devurl': 'https://fence-broker.invalid/',
};

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The sh face's (plugin/external/fence-broker.sh) block of what this table
 * decides: getconfignames, getinfo-*, defaults. scripts/build-plugin.mjs
 * refuses a sh file whose block differs (--update-sh rewrites it); a test
 * compares both faces' outputs.
 */
export function shBlock(): string {
  const dflt = (name: string) => shQuote(OPTIONS.find((o) => o.name === name)?.default ?? '');
  return [
    `CONFIGNAMES=${shQuote(CONFIG_NAMES.join('\n'))}`,
    `PARAMETERS_XML=${shQuote(parametersXml().replace(/\n$/, ''))}`,
    `DEVID=${shQuote(INFO['getinfo-devid'] as string)}`,
    `DEVNAME=${shQuote(INFO['getinfo-devname'] as string)}`,
    `DEVDESCR=${shQuote(INFO['getinfo-devdescr'] as string)}`,
    `DEVURL=${shQuote(INFO['getinfo-devurl'] as string)}`,
    `DEFAULT_IPPORT=${dflt('ipport')}`,
    `DEFAULT_USERNAME=${dflt('username')}`,
    `DEFAULT_BROKER_TIMEOUT=${dflt('broker_timeout')}`,
    `DEFAULT_LOGIN_TIMEOUT=${dflt('login_timeout')}`,
    `DEFAULT_IDENTITY_FILE=${dflt('identity_file')}`,
  ].join('\n') + '\n';
}

type Write = (s: string) => void;

/** The most the name mapping before a fence may take (README, "Timeouts"). */
const MAP_STEP_MS = 5_000;

/** The listed domain a (lower-cased) host name means: itself if listed, else the one case-insensitive match, else itself. */
export function mapCase(host: string, domains: readonly string[]): string {
  if (domains.includes(host)) return host;
  const matches = domains.filter((d) => d.toLowerCase() === host.toLowerCase());
  return matches.length === 1 ? (matches[0] as string) : host;
}

export async function clusterGlue(argv: string[], env: NodeJS.ProcessEnv, out: Write, err: Write): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined) {
    err('usage: fence-broker {gethosts|on|off|reset|status|getconfignames|getinfo-devid|getinfo-devname|getinfo-devdescr|getinfo-devurl|getinfo-xml} [host]\n');
    return 1;
  }
  if (verb === 'getconfignames') {
    out(CONFIG_NAMES.join('\n') + '\n');
    return 0;
  }
  if (verb === 'getinfo-xml') {
    out(parametersXml());
    return 0;
  }
  const info = INFO[verb];
  if (info !== undefined) {
    // No trailing newline: Heartbeat logs the text as it is.
    out(info);
    return 0;
  }
  if (!['gethosts', 'status', 'on', 'off', 'reset'].includes(verb)) {
    err(`fence-broker: unknown verb ${JSON.stringify(verb)}\n`);
    return 1;
  }
  const values: OptionValues = {};
  for (const o of CLUSTER_GLUE_OPTIONS) if (env[o.name] !== undefined) values[o.name] = env[o.name];
  let options;
  try {
    options = toClientOptions(values);
  } catch (e) {
    err(`fence-broker: ${e instanceof OptionError ? e.message : String(e)}\n`);
    return 1;
  }

  if (verb === 'gethosts' || verb === 'status') {
    if (rest.length) {
      err(`fence-broker: ${verb} takes no host\n`);
      return 1;
    }
    const r = await run(options, 'gethosts');
    if (verb === 'gethosts' && r.ok) out((r.domains ?? []).join('\n') + '\n');
    if (!r.ok) err(`fence-broker: ${r.message}\n`);
    return r.ok ? 0 : 1;
  }

  // A host with a space arrives as several words once sh -c has split it.
  if (rest.length !== 1) {
    err(`fence-broker: ${verb} needs exactly one host, got ${rest.length} words\n`);
    return 1;
  }
  const host = rest[0] as string;
  // Never a tenant domain (names.ts), refused before any broker is asked, as the sh face does.
  const reserved = reservedDomainProblem(host);
  if (reserved) {
    err(`fence-broker: ${verb}: domain: ${reserved}\n`);
    return 1;
  }
  // cluster-glue lower-cased the name: map it to the domain it meant from the
  // caller's list first, so the request names a domain the caller really has
  // (no refused request, and no deny line in the audit log, on every fence).
  // At most 5 s of the budget (login 2.5 s + answer 2.5 s; a list is one toolstack
  // read): the fence after it keeps its full clocks, the whole run stays under
  // Pacemaker's 60 s. Without an answer in time the host goes as given.
  const mapping = { ...options, loginTimeoutMs: Math.min(options.loginTimeoutMs, MAP_STEP_MS / 2), timeoutMs: Math.min(options.timeoutMs, MAP_STEP_MS / 2) };
  const list = await run(mapping, 'gethosts');
  let target = list.ok ? mapCase(host, list.domains ?? []) : host;
  let r: Outcome = await run(options, verb as 'on' | 'off' | 'reset', target);
  if (!list.ok && !r.ok && r.unknownTarget) {
    // The quick list did not come back in time: map after the refusal, as a last resort.
    const late = await run(options, 'gethosts');
    const meant = late.ok ? mapCase(host, late.domains ?? []) : host;
    if (meant !== host) r = await run(options, verb as 'on' | 'off' | 'reset', (target = meant));
  }
  (r.ok ? out : err)(`fence-broker: ${verb} ${host}${target === host ? '' : ` (${target})`}: ${r.message}\n`);
  return r.ok ? 0 : 1;
}
