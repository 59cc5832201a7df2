// An in-process SSH client (ssh2) for tests that need many connections or
// channels at once against the real daemon: cheaper than an OpenSSH process
// per request, and it exposes the moments the tests wait for (connected,
// exec accepted, reply, close).
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../common/fingerprint.js';
import type { Daemon } from './broker-daemon.js';

export interface Answer {
  reply: Record<string, unknown>;
  exitCode: number | undefined;
}

/** Connects and authenticates as `keyName`; rejects on any failure. The host key is pinned. */
export function connectAs(d: Daemon, keyName: string, opts: { localAddress?: string; timeoutMs?: number; debug?: (line: string) => void } = {}): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.once('ready', () => resolve(client));
    // Every error (one may follow another as the socket dies) ends in a rejection, never an uncaught one.
    client.on('error', reject);
    client.once('close', () => reject(new Error('closed before ready')));
    client.connect({
      host: '127.0.0.1',
      port: d.port,
      username: 'fence',
      privateKey: readFileSync(d.key(keyName)),
      readyTimeout: opts.timeoutMs ?? 60_000,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      ...(opts.debug ? { debug: opts.debug } : {}),
      hostVerifier: (key: Buffer) => fingerprintOf(key) === d.fingerprint,
    });
  });
}

const answers = new WeakMap<ssh2.ClientChannel, Promise<Answer>>();

/**
 * Opens a session and sends `command`; resolves once the broker accepted the
 * exec. The reply is collected from that moment on (the exit status is an
 * event, not buffered: listening later could miss it); answerOf() returns it.
 */
export function execOn(client: ssh2.Client, command: string): Promise<ssh2.ClientChannel> {
  return new Promise((resolve, reject) =>
    client.exec(command, (err, channel) => {
      if (err) return reject(err);
      const answer = collect(channel);
      answer.catch(() => undefined); // a channel the test abandons on purpose has no answer to wait for
      answers.set(channel, answer);
      resolve(channel);
    }),
  );
}

/** The reply line and exit status of a channel opened by execOn, once it closes. */
export function answerOf(channel: ssh2.ClientChannel): Promise<Answer> {
  return answers.get(channel) ?? Promise.reject(new Error('not a channel opened by execOn'));
}

function collect(channel: ssh2.ClientChannel): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let out = '';
    let exitCode: number | undefined;
    channel.on('data', (b: Buffer) => (out += b.toString()));
    channel.stderr.on('data', () => undefined);
    channel.on('exit', (code: number | null) => (exitCode = code ?? undefined));
    channel.on('close', () => {
      try {
        resolve({ reply: JSON.parse(out.trim()) as Record<string, unknown>, exitCode });
      } catch {
        reject(new Error(`no reply line (exit ${exitCode}): ${JSON.stringify(out)}`));
      }
    });
  });
}

/** One request on a new connection, as the guest plugin does. */
export async function request(d: Daemon, keyName: string, command: string): Promise<Answer> {
  const client = await connectAs(d, keyName);
  try {
    return await answerOf(await execOn(client, command));
  } finally {
    client.end();
  }
}

/** Resolves when `client`'s connection closes. */
export const closed = (client: ssh2.Client): Promise<void> =>
  new Promise((resolve) => {
    client.once('close', () => resolve());
  });
