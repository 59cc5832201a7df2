// (c) The SSH front door under load: C clients in this process (ssh2's
// Client; a plugin process per request would measure process start instead),
// each opening one new connection per request, one exec, the reply, close,
// for a fixed time. Each client has its own loopback source address
// (127.0.1.x), as each guest has its own address. The server's RSS is sampled
// from /proc while it runs; its CPU and ours are read before and after.
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../common/fingerprint.js';
import { percentile } from './stats.js';

export interface FrontDoorTarget {
  port: number;
  /** The server's host key, SHA256:…, pinned by every client. */
  fingerprint: string;
  username: string;
  clients: Client[];
  /** The server process whose memory and CPU are measured. */
  pid: number;
}

export interface Client {
  key: Buffer;
  command: string;
  /** Why a reply is wrong, or undefined when it is the expected answer. */
  check(stdout: string, exitCode: number | undefined): string | undefined;
}

/** One load period against one server. */
export interface FrontDoorRun {
  /** Of the successful requests, ms. */
  latencies: number[];
  errors: number;
  errorSamples: string[];
  elapsedS: number;
  rssPeakKiB: number;
  serverCpuS: number;
  clientCpuS: number;
}

/** Several load periods of one server, summed up. */
export interface FrontDoorResult {
  clients: number;
  ok: number;
  errors: number;
  /** The first few distinct error messages. */
  errorSamples: string[];
  elapsedS: number;
  rps: number;
  p50: number;
  p99: number;
  maxMs: number;
  /** Peak VmRSS of the server while the load ran, KiB. */
  rssPeakKiB: number;
  /** The server's CPU time (its children's included) during the load, s. */
  serverCpuS: number;
  /** This process's (the clients') CPU time during the load, s. */
  clientCpuS: number;
}

const CLK_TCK = 100; // Linux's USER_HZ for /proc/PID/stat on every architecture this runs on

/** utime + stime + cutime + cstime of a process, s. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [11, 12, 13, 14].reduce((s, i) => s + Number(f[i]), 0) / CLK_TCK;
}

export const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

const sourceAddress = (i: number): string => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

/**
 * A client's key, parsed once: each guest parses its own key once per process,
 * and 50 guests have 50 processes (and CPUs) where the bench has one thread.
 * Re-parsing per connection made the load generator, not the server, the
 * bottleneck (OpenSSL 3 decodes a key's PEM in ~0.8 ms).
 */
const parsedKeys = new WeakMap<Buffer, ssh2.ParsedKey>();
function parsed(key: Buffer): ssh2.ParsedKey {
  let k = parsedKeys.get(key);
  if (!k) {
    const r = ssh2.utils.parseKey(key);
    if (r instanceof Error) throw new Error(`a bench client key does not parse: ${r.message}`, { cause: r });
    k = Array.isArray(r) ? (r[0] as ssh2.ParsedKey) : r;
    parsedKeys.set(key, k);
  }
  return k;
}

const publicKeyOnly = (username: string, key: ssh2.ParsedKey): ssh2.AuthMethod[] => [{ type: 'publickey', username, key } as ssh2.PublicKeyAuthMethod];

/** One request on a new connection; resolves to undefined on success or the error, never rejects. */
function once(t: FrontDoorTarget, c: Client, localAddress: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    let settled = false;
    const done = (err: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.end();
      if (err !== undefined) client.destroy();
      resolve(err);
    };
    const timer = setTimeout(() => done(`no reply within ${timeoutMs} ms`), timeoutMs);
    client.on('error', (err) => done(`connection: ${err.message}`));
    client.once('close', () => done('connection closed before the reply'));
    client.once('ready', () => {
      client.exec(c.command, (err, channel) => {
        if (err) return done(`exec refused: ${err.message}`);
        let out = '';
        let exitCode: number | undefined;
        channel.on('data', (b: Buffer) => (out += b.toString()));
        channel.stderr.on('data', () => undefined);
        channel.on('exit', (code: number | null) => (exitCode = code ?? undefined));
        channel.once('close', () => done(c.check(out, exitCode)));
      });
    });
    client.connect({
      host: '127.0.0.1',
      port: t.port,
      localAddress,
      username: t.username,
      // An auth handler takes a parsed key as it is (`privateKey` takes only text).
      authHandler: publicKeyOnly(t.username, parsed(c.key)),
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => fingerprintOf(key) === t.fingerprint,
    });
  });
}

/** Runs every client in a loop for `durationMs`: each starts its next request when its last one ended. */
export async function hammer(t: FrontDoorTarget, o: { durationMs: number; requestTimeoutMs: number }): Promise<FrontDoorRun> {
  const latencies: number[] = [];
  let errors = 0;
  const samples = new Set<string>();
  let rssPeakKiB = rssKiB(t.pid);
  const sampler = setInterval(() => {
    try {
      rssPeakKiB = Math.max(rssPeakKiB, rssKiB(t.pid));
    } catch {
      /* the server died: its requests fail and say so */
    }
  }, 100);
  const server0 = cpuSeconds(t.pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + o.durationMs;
  await Promise.all(
    t.clients.map(async (c, i) => {
      while (performance.now() < end) {
        const a = performance.now();
        const err = await once(t, c, sourceAddress(i), o.requestTimeoutMs);
        if (err === undefined) latencies.push(performance.now() - a);
        else {
          errors++;
          if (samples.size < 5) samples.add(err);
        }
      }
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const cpu = process.cpuUsage(client0);
  return { latencies, errors, errorSamples: [...samples], elapsedS, rssPeakKiB, serverCpuS: cpuSeconds(t.pid) - server0, clientCpuS: (cpu.user + cpu.system) / 1e6 };
}

/** The periods of one server as one result, latencies pooled. */
export function summarize(clients: number, runs: FrontDoorRun[]): FrontDoorResult {
  const sum = (f: (r: FrontDoorRun) => number) => runs.reduce((s, r) => s + f(r), 0);
  const latencies = runs.flatMap((r) => r.latencies);
  const elapsedS = sum((r) => r.elapsedS);
  return {
    clients,
    ok: latencies.length,
    errors: sum((r) => r.errors),
    errorSamples: [...new Set(runs.flatMap((r) => r.errorSamples))].slice(0, 5),
    elapsedS,
    rps: latencies.length / elapsedS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    maxMs: latencies.reduce((a, b) => Math.max(a, b), 0),
    rssPeakKiB: Math.max(...runs.map((r) => r.rssPeakKiB)),
    serverCpuS: sum((r) => r.serverCpuS),
    clientCpuS: sum((r) => r.clientCpuS),
  };
}

/** The check of a fence-broker `status` reply: exit 0, ok, the domain on. */
export function brokerStatusOk(target: string): Client['check'] {
  return (stdout, exitCode) => {
    let reply: { ok?: unknown; state?: unknown; code?: unknown; message?: unknown; target?: unknown };
    try {
      reply = JSON.parse(stdout.trim()) as typeof reply;
    } catch {
      return `no JSON reply (exit ${exitCode}): ${stdout.slice(0, 120)}`;
    }
    if (exitCode !== 0 || reply.ok !== true || reply.state !== 'on' || reply.target !== target) return `status ${target}: exit ${exitCode}, ${String(reply.code)}: ${String(reply.message).slice(0, 160)}`;
    return undefined;
  };
}
