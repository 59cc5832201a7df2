// The guest's side of the wire: one SSH exec per request to a broker whose
// host key matches the pinned fingerprint, one JSON reply line back. Shared by
// both plugin faces (cluster-glue and fence-agents).
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf, FINGERPRINT_PATTERN } from '../common/fingerprint.js';
import { isValidName } from '../common/names.js';
import { REPLY_CODES, type WireReply } from '../common/reply.js';
import { formatRequest, type Request } from '../common/request.js';

/** What both faces configure, whatever their option syntax. */
export interface ClientOptions {
  /** host[:port], one per broker (a cluster spread over several hosts lists them all). */
  brokers: { host: string; port: number }[];
  user: string;
  identityFile: string;
  /** The brokers' host keys, "SHA256:..." as `ssh-keygen -lf` prints them; any other is refused. */
  hostKeyFingerprints: string[];
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
export const DEFAULT_TIMEOUT_S = 60;

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
}

/** Sends one request to one broker; never throws: failures are replies with code "unreachable". */
export function send(o: ClientOptions, broker: { host: string; port: number }, request: Request): Promise<Reply> {
  const where = `${broker.host}:${broker.port}`;
  const command = formatRequest(request);
  const target = 'target' in request ? request.target : '';
  const fail = (message: string): Reply => ({ ok: false, action: request.verb, target, state: 'unknown', message: `${where}: ${message}`, code: 'unreachable', broker: where, exitCode: -1 });
  let privateKey: Buffer;
  try {
    privateKey = readFileSync(o.identityFile);
  } catch (err) {
    return Promise.resolve(fail(`cannot read identity file ${o.identityFile}: ${(err as Error).message}`));
  }
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
    const timer = setTimeout(() => finish(fail(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    conn.on('error', (err) => finish(fail(hostKeyBad || err.message)));
    conn.on('ready', () => {
      conn.exec(command, (err, stream) => {
        if (err) return finish(fail(err.message));
        stream.on('data', (b: Buffer) => {
          if (out.length < 1_000_000) out += b.toString('utf8');
        });
        stream.stderr.on('data', () => undefined);
        stream.on('exit', (code: number | null) => (exitCode = code ?? -1));
        stream.on('close', () => {
          const line = out.split('\n').find((l) => l.trim().startsWith('{'));
          try {
            const r = JSON.parse(line ?? '') as Omit<Reply, 'broker' | 'exitCode'>;
            if (typeof r.ok !== 'boolean' || typeof r.message !== 'string') throw new Error('reply lacks ok/message');
            if (!(REPLY_CODES as readonly string[]).includes(r.code)) throw new Error(`unknown reply code ${JSON.stringify(r.code)}`);
            finish({ ...r, ok: r.ok === true && exitCode === 0, broker: where, exitCode });
          } catch (e) {
            finish(fail(`unreadable reply (${(e as Error).message}): ${out.slice(0, 200)}`));
          }
        });
      });
    });
    conn.connect({
      host: broker.host,
      port: broker.port,
      username: o.user,
      privateKey,
      readyTimeout: o.timeoutMs,
      // Host key pinning: anything but the configured fingerprint ends the connection.
      hostVerifier: (key: Buffer) => {
        const seen = fingerprintOf(key);
        if (o.hostKeyFingerprints.includes(seen)) return true;
        hostKeyBad = `host key ${seen} does not match the pinned ${o.hostKeyFingerprints.join(', ')}; refusing this broker`;
        return false;
      },
    });
  });
}
