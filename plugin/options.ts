// The plugin's options, in one table (modelled on fence-agents' all_opt): name,
// flags, type, default, description, aliases, order, and which face offers it.
// Everything else is derived from it: the getopt parser and the stdin names
// (fence-agents face), the metadata (action and plug included), the
// cluster-glue face's getconfignames and getinfo-xml, and --help.
import { existsSync, readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../common/fingerprint.js';
import { NODE_KEY_PATH } from '../common/node-key.js';
import type { ParseArgsConfig } from 'node:util';
import { checkClientOptions, DEFAULT_LOGIN_TIMEOUT_S, DEFAULT_PORT, DEFAULT_TIMEOUT_S, OptionError, parseBrokers, type ClientOptions } from './client.js';

export interface OptionSpec {
  /** stdin, environment and metadata name. */
  name: string;
  /** --long-flag (without the dashes). */
  long: string;
  short?: string;
  /** For metadata and the getopt help: what the value is. */
  arg?: string;
  type: 'string' | 'integer' | 'second' | 'boolean';
  required: boolean;
  default?: string;
  shortdesc: string;
  /** Other names accepted for it, on stdin and as flags (fence-agents' spellings). */
  aliases?: string[];
  /** Shown in the metadata as a deprecated alias (fence-agents' port for plug). */
  deprecatedAlias?: string;
  /** cluster-glue's parameters are the connection options only (positional in Heartbeat's stonith_host). */
  clusterGlue: boolean;
  /**
   * cluster-glue: given by name or environment only, never a position of
   * Heartbeat's stonith_host (its 7 positions are an interface: a count that
   * differs stops Heartbeat), so not in getconfignames.
   */
  byNameOnly?: true;
  /** Metadata and help order (fence-agents' convention: connection first, generic last). */
  order: number;
}

export const OPTIONS: OptionSpec[] = [
  { name: 'action', long: 'action', short: 'o', arg: 'action', type: 'string', required: true, default: 'reboot', shortdesc: 'Fencing action', clusterGlue: false, order: 1 },
  { name: 'plug', long: 'plug', short: 'n', arg: 'id', type: 'string', required: true, shortdesc: 'Domain (virtual machine) to act on, as the broker knows it', aliases: ['port'], deprecatedAlias: 'port', clusterGlue: false, order: 1 },
  { name: 'ip', long: 'ip', short: 'a', arg: 'host[:port],...', type: 'string', required: true, shortdesc: 'fence-broker address(es): host[:port], comma-separated when the cluster spans several hosts', aliases: ['ipaddr'], clusterGlue: true, order: 2 },
  { name: 'ipport', long: 'ipport', short: 'u', arg: 'port', type: 'integer', required: false, default: String(DEFAULT_PORT), shortdesc: 'SSH port of the broker(s) where an address gives none', clusterGlue: true, order: 3 },
  { name: 'username', long: 'username', short: 'l', arg: 'name', type: 'string', required: false, default: 'fence', shortdesc: 'SSH user name (any; the broker identifies the node by its key)', aliases: ['login'], clusterGlue: true, order: 4 },
  { name: 'identity_file', long: 'identity-file', short: 'k', arg: 'filename', type: 'string', required: false, default: NODE_KEY_PATH, shortdesc: "This node's SSH private key, registered for it in the broker's clusters.yaml (fencectl keygen makes it)", clusterGlue: true, order: 5 },
  { name: 'host_key_fingerprint', long: 'host-key-fingerprint', arg: 'SHA256:...', type: 'string', required: true, shortdesc: 'The broker host key fingerprint(s), comma-separated (ssh-keygen -lf host_key.pub); any other host key is refused', clusterGlue: true, order: 6 },
  { name: 'known_hosts_file', long: 'known-hosts-file', arg: 'filename', type: 'string', required: false, shortdesc: "OpenSSH known_hosts file with the broker host key(s), each also listed in host_key_fingerprint; only its keys are read. The sh face needs it (default: identity_file with .known_hosts appended); the Node faces pin its keys when it is given", clusterGlue: true, byNameOnly: true, order: 6 },
  { name: 'broker_timeout', long: 'broker-timeout', arg: 'seconds', type: 'second', required: false, default: String(DEFAULT_TIMEOUT_S), shortdesc: "Give up on a broker that has not answered a request within this many seconds after login (longer than the broker's own 40 s deadline)", aliases: ['power_timeout'], clusterGlue: true, order: 7 },
  { name: 'login_timeout', long: 'login-timeout', arg: 'seconds', type: 'second', required: false, default: String(DEFAULT_LOGIN_TIMEOUT_S), shortdesc: 'Give up on a broker that has not accepted the connection and login within this many seconds', clusterGlue: true, order: 8 },
  { name: 'delay', long: 'delay', arg: 'seconds', type: 'second', required: false, default: '0', shortdesc: 'Wait this many seconds before off or reboot (not on, status or list)', clusterGlue: false, order: 200 },
  { name: 'power_wait', long: 'power-wait', arg: 'seconds', type: 'second', required: false, default: '0', shortdesc: 'Wait this many seconds after a confirmed on or off before reporting it', clusterGlue: false, order: 200 },
  { name: 'retry_on', long: 'retry-on', arg: 'attempts', type: 'integer', required: false, default: '1', shortdesc: 'How many times to try power on', clusterGlue: false, order: 201 },
  { name: 'separator', long: 'separator', short: 'C', arg: 'char', type: 'string', required: false, default: ',', shortdesc: "Separator for the CSV the 'list' action prints", clusterGlue: false, order: 100 },
  { name: 'plug_separator', long: 'plug-separator', arg: 'char', type: 'string', required: false, default: ',', shortdesc: 'Separator between plugs when more than one is given (fence_broker acts on one plug at a time)', clusterGlue: false, order: 100 },
  { name: 'quiet', long: 'quiet', short: 'q', type: 'boolean', required: false, shortdesc: 'Print only failures', clusterGlue: false, order: 50 },
  { name: 'verbose', long: 'verbose', short: 'v', type: 'boolean', required: false, shortdesc: 'Verbose mode: each request and reply on stderr', clusterGlue: false, order: 51 },
  { name: 'debug_file', long: 'debug-file', short: 'D', arg: 'debugfile', type: 'string', required: false, shortdesc: 'Write debug information to this file', clusterGlue: false, order: 52 },
  { name: 'version', long: 'version', short: 'V', type: 'boolean', required: false, shortdesc: 'Display version information and exit', clusterGlue: false, order: 53 },
  { name: 'help', long: 'help', short: 'h', type: 'boolean', required: false, shortdesc: 'Display help and exit', clusterGlue: false, order: 54 },
];

const sorted = (specs: OptionSpec[]) => [...specs].sort((a, b) => a.order - b.order);

/** cluster-glue's parameters (read from the environment, listed in getinfo-xml). */
export const CLUSTER_GLUE_OPTIONS = OPTIONS.filter((o) => o.clusterGlue);

/** getconfignames, in order: Heartbeat's stonith_host gives these by position; the list is pinned by a test. */
export const CONFIG_NAMES = CLUSTER_GLUE_OPTIONS.filter((o) => !o.byNameOnly).map((o) => o.name);

/** fence-agents' getopt spelling, "-a, --ip=[host[:port],...]". */
export const getoptOf = (o: OptionSpec): string => `${o.short ? `-${o.short}, ` : ''}--${o.long}${o.type === 'boolean' ? '' : `=[${o.arg ?? 'value'}]`}`;

/** Every stdin name (and alias) → the option it means. */
export const STDIN_NAMES: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.flatMap((o) => [o.name, ...(o.aliases ?? [])].map((n) => [n, o] as const)));

/** node:util parseArgs options, aliases as long flags of their own. */
export function parseArgsOptions(): NonNullable<ParseArgsConfig['options']> {
  const opts: NonNullable<ParseArgsConfig['options']> = {};
  for (const o of OPTIONS) {
    const type = o.type === 'boolean' ? 'boolean' : 'string';
    opts[o.long] = o.short ? { type, short: o.short } : { type };
    for (const a of o.aliases ?? []) opts[a.replace(/_/g, '-')] = { type };
  }
  return opts;
}

/** A flag (long name, or alias) → the option's name. */
export function optionOfFlag(flag: string): string | undefined {
  const o = OPTIONS.find((x) => x.long === flag || (x.aliases ?? []).some((a) => a.replace(/_/g, '-') === flag));
  return o?.name;
}

export const isTrue = (v: string | undefined): boolean => v !== undefined && !/^(0|false|no|off)$/i.test(v.trim());

/** --help text, from the table. */
export function helpText(prog: string): string {
  const lines = sorted(OPTIONS).map((o) => `   ${getoptOf(o).padEnd(40)} ${o.shortdesc}${o.default !== undefined ? ` (default ${o.default})` : ''}`);
  return `Usage:\n\t${prog} [options]\nOptions:\n${lines.join('\n')}\n`;
}

/** The metadata's parameters (fence-agents' `<parameter>` elements), from the table. */
export function metadataParameters(escape: (s: string) => string): string[] {
  const param = (o: OptionSpec, name: string, extra: string) =>
    `\t<parameter name="${name}" unique="0" required="${o.required ? 1 : 0}"${extra}>\n` +
    `\t\t<getopt mixed="${escape(getoptOf(o))}" />\n` +
    `\t\t<content type="${o.type}"${o.default === undefined ? '' : ` default="${escape(o.default)}"`} />\n` +
    `\t\t<shortdesc lang="en">${escape(o.shortdesc)}</shortdesc>\n\t</parameter>`;
  return sorted(OPTIONS).flatMap((o) => [
    param(o, o.name, o.deprecatedAlias ? ` obsoletes="${o.deprecatedAlias}"` : ''),
    ...(o.deprecatedAlias ? [param(o, o.deprecatedAlias, ' deprecated="1"')] : []),
  ]);
}

export type OptionValues = Partial<Record<string, string>>;

/** A number of seconds up to an hour; timeouts must be positive, waits may be 0. */
const seconds = (name: string, value: string | undefined, dflt: number, positive: boolean): number => {
  const n = Number(value ?? dflt);
  if (!Number.isFinite(n) || n > 3600 || (positive ? n <= 0 : n < 0)) {
    throw new OptionError(`${name} ${JSON.stringify(value)} is not a number of seconds in ${positive ? '(0' : '[0'}, 3600]`);
  }
  return n;
};

/** Values → ClientOptions, or an OptionError naming the option at fault. */
export function toClientOptions(v: OptionValues): ClientOptions {
  const need = (name: string): string => {
    const value = v[name];
    if (value === undefined || value === '') throw new OptionError(`missing option ${name}`);
    return value;
  };
  const port = Number(v.ipport ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new OptionError(`ipport ${JSON.stringify(v.ipport)} is not a port number`);
  const timeout = seconds('broker_timeout', v.broker_timeout, DEFAULT_TIMEOUT_S, true);
  const login = seconds('login_timeout', v.login_timeout, DEFAULT_LOGIN_TIMEOUT_S, true);
  const fingerprints = need('host_key_fingerprint').split(/[,\s]+/).filter(Boolean);
  const o: ClientOptions = {
    brokers: parseBrokers(need('ip'), port),
    user: v.username ?? 'fence',
    identityFile: v.identity_file || NODE_KEY_PATH,
    hostKeyFingerprints: v.known_hosts_file ? knownHostsPins(v.known_hosts_file, fingerprints) : fingerprints,
    timeoutMs: timeout * 1000,
    loginTimeoutMs: login * 1000,
  };
  checkClientOptions(o);
  return o;
}

/**
 * The keys of a known_hosts file (the sh face's pin, which OpenSSH needs as a
 * key), as fingerprints: each must also be among `fingerprints`, and only they
 * are then pinned. Host names in the file are not read; markers are refused.
 */
export function knownHostsPins(file: string, fingerprints: string[]): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OptionError(`cannot read known_hosts_file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const pins: string[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    const f = line.trim().split(/\s+/);
    if (f[0] === '' || f[0]?.startsWith('#')) continue;
    if (f[0]?.startsWith('@')) throw new OptionError(`known_hosts_file ${file}:${i + 1}: markers (${f[0]}) are not supported`);
    // "hosts type key [comment]", or "type key [comment]" (a .pub file): a key's base64 starts AAAA.
    const [type, b64] = f[1]?.startsWith('AAAA') ? [f[0], f[1]] : [f[1], f[2]];
    const parsed = type && b64 && /^[A-Za-z0-9+/]+=*$/.test(b64) ? ssh2.utils.parseKey(`${type} ${b64}`) : undefined;
    if (!parsed || parsed instanceof Error || Array.isArray(parsed)) throw new OptionError(`known_hosts_file ${file}:${i + 1}: not a key line`);
    const fp = fingerprintOf(parsed.getPublicSSH());
    if (!fingerprints.includes(fp)) throw new OptionError(`known_hosts_file ${file} holds key ${fp}, which is not among host_key_fingerprint (${fingerprints.join(', ')}); refusing it`);
    pins.push(fp);
  }
  if (pins.length === 0) throw new OptionError(`known_hosts_file ${file} holds no key`);
  return [...new Set(pins)];
}

/** The fence-agents face's own knobs, checked. */
export interface AgentOptions {
  delayMs: number;
  powerWaitMs: number;
  retryOn: number;
  separator: string;
}

export function toAgentOptions(v: OptionValues): AgentOptions {
  const retryOn = Number(v.retry_on ?? 1);
  if (!Number.isInteger(retryOn) || retryOn < 1 || retryOn > 10) throw new OptionError(`retry_on ${JSON.stringify(v.retry_on)} is not a count in 1..10`);
  return {
    delayMs: seconds('delay', v.delay, 0, false) * 1000,
    powerWaitMs: seconds('power_wait', v.power_wait, 0, false) * 1000,
    retryOn,
    separator: v.separator ?? ',',
  };
}

/** Checks that need no broker: the options parse, the key file exists. */
export function validate(v: OptionValues): string[] {
  const problems: string[] = [];
  try {
    const o = toClientOptions(v);
    toAgentOptions(v);
    if (!existsSync(o.identityFile)) problems.push(`identity_file ${o.identityFile} does not exist`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  return [...new Set(problems)];
}
