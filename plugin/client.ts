// The guest's side of the wire: one SSH exec per request to a broker whose
// host key matches the pinned fingerprint, one JSON reply line back. Shared by
// both plugin faces (cluster-glue and fence-agents).
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf, FINGERPRINT_PATTERN } from '../common/fingerprint.js';
import { isValidName } from '../common/names.js';
import { POWER_STATES, REPLY_CODES, type PowerState, type WireReply } from '../common/wire.js';
import { formatRequest, type Request } from '../common/request.js';

/** What both faces configure, whatever their option syntax. */
export interface ClientOptions {
  /** host[:port], one per broker (a cluster spread over several hosts lists them all). */
  brokers: { host: string; port: number }[];
  user: string;
  identityFile: string;
  /** The brokers' host keys, "SHA256:..." as `ssh-keygen -lf` prints them; any other is refused. */
  hostKeyFingerprints: string[];
  /** From connect to an authenticated session (login_timeout). */
  loginTimeoutMs: number;
  /** From the request sent to its answer (broker_timeout): longer than the broker's own deadline. */
  timeoutMs: number;
}

/** The broker's reply (common/reply.ts) plus where it came from; "unreachable" is the plugin's own. */
export interface Reply extends Omit<WireReply, 'code' | 'request_id'> {
  code: WireReply['code'] | 'unreachable';
  request_id?: string;
  broker: string;
  exitCode: number;
}

export const DEFAULT_PORT = 2222;
/**
 * The clocks nest (README, "Timeouts"): the broker answers within its request
 * deadline (40 s); the plugin waits 45 s for that answer after at most 5 s of
 * connect and login, so it ends by 50 s, before Pacemaker's stonith-timeout (60 s).
 */
export const DEFAULT_TIMEOUT_S = 45;
export const DEFAULT_LOGIN_TIMEOUT_S = 5;

export class OptionError extends Error {}

/** "h1[:p],h2[:p]" → brokers; every part checked. */
export function parseBrokers(value: string, defaultPort: number): ClientOptions['brokers'] {
  const parts = value.split(/[,\s]+/).filter(Boolean);
  if (parts.length === 0) throw new OptionError('no broker address given');
  return parts.map((p) => {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(p);
    const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
    if (!m || port < 1 || port > 65535) throw new OptionError(`broker address ${JSON.stringify(p)} is not host[:port]`);
    return { host: (m[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
  });
}

export function checkClientOptions(o: ClientOptions): void {
  if (o.hostKeyFingerprints.length === 0) throw new OptionError('no host key fingerprint given');
  for (const f of o.hostKeyFingerprints) {
    if (!FINGERPRINT_PATTERN.test(f)) throw new OptionError(`host key fingerprint ${JSON.stringify(f)} is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)`);
  }
  if (!isValidName(o.user)) throw new OptionError(`user ${JSON.stringify(o.user)} is not a valid name`);
  if (!(o.timeoutMs > 0)) throw new OptionError('timeout must be positive');
  if (!(o.loginTimeoutMs > 0)) throw new OptionError('login timeout must be positive');
}

const isOneOf = <T extends string>(list: readonly T[], v: unknown): v is T => typeof v === 'string' && (list as readonly string[]).includes(v);

/**
 * Checks a broker's reply against the request that was sent (docs/design.md §3.6):
 * the wire contract's shape, the same action and target, a known state; names
 * of a list must match the name pattern (others are dropped with a warning).
 * Success also needs exit status 0. Returns the reply, or why it is not trusted.
 */
export function checkReply(request: Request, raw: unknown, exitCode: number, warn: (s: string) => void): Omit<Reply, 'broker' | 'exitCode'> | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const r = raw as Record<string, unknown>;
  const target = 'target' in request ? request.target : '';
  if (typeof r.ok !== 'boolean') return '"ok" is not a boolean';
  if (typeof r.message !== 'string') return '"message" is not a string';
  if (!isOneOf(REPLY_CODES, r.code)) return `unknown code ${JSON.stringify(r.code)}`;
  if (r.action !== request.verb) return `action ${JSON.stringify(r.action)} does not match the request's ${request.verb}`;
  if (r.target !== target) return `target ${JSON.stringify(r.target)} does not match the request's ${JSON.stringify(target)}`;
  if (!isOneOf(POWER_STATES, r.state)) return `state ${JSON.stringify(r.state)} is not one of ${POWER_STATES.join(', ')}`;
  if (r.ok && r.code !== 'ok') return `ok with code ${r.code}`;
  if (r.ok && exitCode !== 0) return `ok with exit status ${exitCode}`;
  if (r.ok && request.verb === 'status' && r.state === 'unknown') return 'status ok without a state';
  let domains: string[] | undefined;
  let states: Record<string, PowerState> | undefined;
  if (request.verb === 'list' || request.verb === 'gethosts') {
    if (r.ok && !Array.isArray(r.domains)) return 'a list without "domains"';
    domains = [];
    for (const d of Array.isArray(r.domains) ? r.domains : []) {
      if (isValidName(d)) domains.push(d);
      else warn(`fence_broker: WARNING: dropped a domain name off the pattern from the broker's list: ${JSON.stringify(d).slice(0, 80)}\n`);
    }
    // States only for listed names, only from the contract's three; anything else is unknown.
    const raw = typeof r.states === 'object' && r.states !== null ? (r.states as Record<string, unknown>) : {};
    states = Object.fromEntries(domains.map((d) => [d, isOneOf(POWER_STATES, raw[d]) ? raw[d] : 'unknown'])) as Record<string, PowerState>;
  }
  return {
    ok: r.ok,
    action: request.verb,
    target,
    state: r.state,
    message: r.message.slice(0, 2000),
    code: r.code,
    ...(typeof r.request_id === 'string' ? { request_id: r.request_id } : {}),
    ...(domains ? { domains } : {}),
    ...(states ? { states } : {}),
  };
}

/** The private key file, read and parsed: a missing or unparseable one fails before any connection. */
export function loadIdentity(file: string): Buffer | string {
  let key: Buffer;
  try {
    key = readFileSync(file);
  } catch (err) {
    return `cannot read identity file ${file}: ${(err as Error).message}`;
  }
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error) return `identity file ${file} is not a usable private key: ${parsed.message}`;
  if (Array.isArray(parsed) || !parsed.isPrivateKey()) return `identity file ${file} holds no private key`;
  return key;
}

const stderrWarn = (s: string) => void process.stderr.write(s);

/** ssh2's "All configured authentication methods failed": the broker took none of our keys. */
const isAuthRefused = (err: Error): boolean => (err as Error & { level?: string }).level === 'client-authentication';

/** Which key the broker refused, as the host admin's clusters.yaml and audit log would name it. */
function refusedKey(privateKey: Buffer, file: string, where: string): string {
  const parsed = ssh2.utils.parseKey(privateKey);
  const fingerprint = parsed instanceof Error || Array.isArray(parsed) ? '(unreadable)' : fingerprintOf(parsed.getPublicSSH());
  return `key ${fingerprint} (${file}) is not accepted by fence-broker at ${where}: it is not in the host's clusters.yaml, or was revoked; ask the host admin to add it`;
}

/** Sends one request to one broker; never throws: failures are replies with code "unreachable". */
export function send(o: ClientOptions, broker: { host: string; port: number }, request: Request, warn: (s: string) => void = stderrWarn): Promise<Reply> {
  const where = `${broker.host}:${broker.port}`;
  const command = formatRequest(request);
  const target = 'target' in request ? request.target : '';
  // The broker's address is added once, where replies are summarised (fencing.ts).
  const fail = (message: string): Reply => ({ ok: false, action: request.verb, target, state: 'unknown', message, code: 'unreachable', broker: where, exitCode: -1 });
  const privateKey = loadIdentity(o.identityFile);
  if (typeof privateKey === 'string') return Promise.resolve(fail(privateKey));
  return new Promise((resolve) => {
    const conn = new ssh2.Client();
    let out = '';
    let exitCode = -1;
    let hostKeyBad = '';
    let done = false;
    const finish = (r: Reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.end();
      resolve(r);
    };
    // Two clocks: connect and login, then the answer (which the broker bounds by its own, shorter, deadline).
    let timer = setTimeout(() => finish(fail(`no login within ${o.loginTimeoutMs} ms`)), o.loginTimeoutMs);
    conn.on('error', (err) => finish(fail(hostKeyBad || (isAuthRefused(err) ? refusedKey(privateKey, o.identityFile, where) : err.message))));
    conn.on('ready', () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(fail(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
      conn.exec(command, (err, stream) => {
        if (err) return finish(fail(err.message));
        stream.on('data', (b: Buffer) => {
          if (out.length < 1_000_000) out += b.toString('utf8');
        });
        stream.stderr.on('data', () => undefined);
        stream.on('exit', (code: number | null) => (exitCode = code ?? -1));
        stream.on('close', () => {
          const line = out.split('\n').find((l) => l.trim().startsWith('{'));
          let raw: unknown;
          try {
            raw = JSON.parse(line ?? '');
          } catch {
            return finish(fail(`unreadable reply: ${JSON.stringify(out.slice(0, 200))}`));
          }
          const checked = checkReply(request, raw, exitCode, warn);
          finish(typeof checked === 'string' ? fail(`reply not trusted: ${checked}`) : { ...checked, broker: where, exitCode });
        });
      });
    });
    conn.connect({
      host: broker.host,
      port: broker.port,
      username: o.user,
      privateKey,
      readyTimeout: o.loginTimeoutMs,
      // Host key pinning: anything but the configured fingerprint ends the connection.
      hostVerifier: (key: Buffer) => {
        const seen = fingerprintOf(key);
        if (o.hostKeyFingerprints.includes(seen)) return true;
        hostKeyBad = `host key ${seen} does not match the pinned ${o.hostKeyFingerprints.join(', ')}; refusing this broker`;
        return false;
      },
    });
    // Nagle off: each handshake round trip is a small write answered by the
    // peer; with Nagle on, every one waits out a delayed ACK (~40 ms).
    conn.setNoDelay(true);
  });
}
