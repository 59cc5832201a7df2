// The plugin's options, once for both faces: names, descriptions, defaults,
// and their conversion to ClientOptions. The faces only differ in where the
// values come from (cluster-glue: environment; fence-agents: stdin or flags).
import { existsSync } from 'node:fs';
import { checkClientOptions, DEFAULT_LOGIN_TIMEOUT_S, DEFAULT_PORT, DEFAULT_TIMEOUT_S, OptionError, parseBrokers, type ClientOptions } from './client.js';

export interface OptionSpec {
  name: string;
  /** fence-agents getopt spelling. */
  getopt: string;
  type: 'string' | 'integer' | 'second';
  required: boolean;
  default?: string;
  shortdesc: string;
}

export const OPTIONS: OptionSpec[] = [
  { name: 'ip', getopt: '-a, --ip=[host[:port],...]', type: 'string', required: true, shortdesc: 'fence-broker address(es): host[:port], comma-separated when the cluster spans several hosts' },
  { name: 'ipport', getopt: '-u, --ipport=[port]', type: 'integer', required: false, default: String(DEFAULT_PORT), shortdesc: 'SSH port of the broker(s) where an address gives none' },
  { name: 'username', getopt: '-l, --username=[name]', type: 'string', required: false, default: 'fence', shortdesc: 'SSH user name (any; the broker identifies the node by its key)' },
  { name: 'identity_file', getopt: '-k, --identity-file=[filename]', type: 'string', required: true, shortdesc: "This node's SSH private key, registered for it in the broker's clusters.yaml" },
  { name: 'host_key_fingerprint', getopt: '--host-key-fingerprint=[SHA256:...]', type: 'string', required: true, shortdesc: "The broker host key fingerprint(s), comma-separated (ssh-keygen -lf host_key.pub); any other host key is refused" },
  { name: 'broker_timeout', getopt: '--broker-timeout=[seconds]', type: 'second', required: false, default: String(DEFAULT_TIMEOUT_S), shortdesc: "Give up on a broker that has not answered a request within this many seconds (after login; longer than the broker's own 40 s deadline; alias power_timeout)" },
  { name: 'login_timeout', getopt: '--login-timeout=[seconds]', type: 'second', required: false, default: String(DEFAULT_LOGIN_TIMEOUT_S), shortdesc: 'Give up on a broker that has not accepted the connection and login within this many seconds' },
];

export type OptionValues = Partial<Record<string, string>>;

/** Values → ClientOptions, or an OptionError naming the option at fault. */
export function toClientOptions(v: OptionValues): ClientOptions {
  const need = (name: string): string => {
    const value = v[name];
    if (value === undefined || value === '') throw new OptionError(`missing option ${name}`);
    return value;
  };
  const port = Number(v.ipport ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new OptionError(`ipport ${JSON.stringify(v.ipport)} is not a port number`);
  const seconds = (name: string, value: string | undefined, dflt: number): number => {
    const n = Number(value ?? dflt);
    if (!(n > 0 && n <= 3600)) throw new OptionError(`${name} ${JSON.stringify(value)} is not a number of seconds in (0, 3600]`);
    return n;
  };
  // fence-agents' power_timeout is accepted for broker_timeout.
  const timeout = seconds('broker_timeout', v.broker_timeout ?? v.power_timeout, DEFAULT_TIMEOUT_S);
  const login = seconds('login_timeout', v.login_timeout, DEFAULT_LOGIN_TIMEOUT_S);
  const o: ClientOptions = {
    brokers: parseBrokers(need('ip'), port),
    user: v.username ?? 'fence',
    identityFile: need('identity_file'),
    hostKeyFingerprints: need('host_key_fingerprint').split(/[,\s]+/).filter(Boolean),
    timeoutMs: timeout * 1000,
    loginTimeoutMs: login * 1000,
  };
  checkClientOptions(o);
  return o;
}

/** Checks that need no broker: the options parse, the key file exists. */
export function validate(v: OptionValues): string[] {
  const problems: string[] = [];
  try {
    const o = toClientOptions(v);
    if (!existsSync(o.identityFile)) problems.push(`identity_file ${o.identityFile} does not exist`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  return [...new Set(problems)];
}
