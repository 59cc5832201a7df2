// The daemon's status socket (broker.status_socket): `fencectl status` asks
// the running daemon what it runs, without a network port. A UNIX socket,
// 0600 in a folder only the daemon's user may enter (0700), so only that
// user (root) can connect. Read-only and bounded: one request line of a few
// bytes ("status"), one JSON line back, a few connections at once, and an
// absolute deadline per connection; nothing it is asked changes anything.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { CoordinationSnapshot } from './coordination/coordination.js';
import type { InFlight } from './broker.js';

/** What a door reports about itself; each door gives one (doors/ssh.ts), so a new door adds itself. */
export interface DoorStatus {
  door: string;
  /** Where it listens (host:port, a group, a folder). */
  listen: string;
  /** Connections (or sessions) by state, as the door counts them. */
  connections: Record<string, number>;
}

/** The answer to `status`, one JSON line (fencectl status --json prints it). */
export interface StatusReport {
  ok: true;
  pid: number;
  started_at: string;
  uptime_s: number;
  config: { file: string; sha256: string; tenancy: string; loaded_at: string };
  policy: { revision: string; sha256: string };
  host_key: string;
  host_id: string;
  toolstack: string;
  doors: DoorStatus[];
  requests_in_progress: number;
  fences_in_flight: (InFlight & { elapsed_ms: number })[];
  coordination: { describe: string } & (CoordinationSnapshot | { error: string });
}

/** What the daemon knows, read at each request (the config and policy change on reload). */
export interface StatusSources {
  startedAt: Date;
  config: () => { file: string; sha256: string; tenancy: string; loadedAt: Date };
  policy: () => { revision: string; sha256: string };
  hostKey: string;
  hostId: string;
  toolstack: string;
  doors: () => DoorStatus[];
  requestsInProgress: () => number;
  inFlight: () => InFlight[];
  coordination: { describe: string; snapshot: () => Promise<CoordinationSnapshot> };
}

/** Bounds: a handful of admins at once, a request of a few bytes, an answer within seconds. */
export const STATUS_LIMITS = { maxConnections: 4, maxRequestBytes: 64, deadlineMs: 5_000, snapshotMs: 3_000 };

/** The one request there is. */
export const STATUS_REQUEST = 'status';

export async function report(s: StatusSources, now = new Date()): Promise<StatusReport> {
  const c = s.config();
  let coordination: StatusReport['coordination'];
  let timer: NodeJS.Timeout | undefined;
  try {
    // Within the connection's deadline whatever the store's own timeout: the rest of the answer must get out.
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${STATUS_LIMITS.snapshotMs} ms`)), STATUS_LIMITS.snapshotMs);
    });
    coordination = { describe: s.coordination.describe, ...(await Promise.race([s.coordination.snapshot(), late])) };
  } catch (err) {
    // A store out of reach is worth seeing; the rest of the answer still stands.
    coordination = { describe: s.coordination.describe, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
  return {
    ok: true,
    pid: process.pid,
    started_at: s.startedAt.toISOString(),
    uptime_s: Math.round((now.getTime() - s.startedAt.getTime()) / 1000),
    config: { file: c.file, sha256: c.sha256, tenancy: c.tenancy, loaded_at: c.loadedAt.toISOString() },
    policy: s.policy(),
    host_key: s.hostKey,
    host_id: s.hostId,
    toolstack: s.toolstack,
    doors: s.doors(),
    requests_in_progress: s.requestsInProgress(),
    fences_in_flight: s.inFlight().map((f) => ({ ...f, elapsed_ms: Math.max(0, now.getTime() - Date.parse(f.since)) })),
    coordination,
  };
}

/** Why the socket's folder is unfit (reachable by others, not ours), or undefined; created 0700 when missing. */
function folderProblem(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) return `${dir} is not a folder`;
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) return `folder ${dir} is owned by uid ${st.uid}, not the broker's user (uid ${uid})`;
  if (st.mode & 0o077) return `folder ${dir} is mode ${(st.mode & 0o777).toString(8)}: group and others must have no access (chmod 700 it, or set broker.status_socket to a path in such a folder)`;
  return undefined;
}

/** A socket file left by a daemon that died (kill -9) is removed; anything else there is refused. */
export async function removeStaleSocket(path: string, what: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new Error(`${what}: ${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${what}: ${path} is in use by a running process (another broker?)`);
  unlinkSync(path);
}

export interface StatusServer {
  path: string;
  close(): Promise<void>;
}

/** Serves `status` on the UNIX socket `path` (0600 in a 0700 folder). Throws, saying why, when it cannot. */
export async function serveStatus(path: string, sources: StatusSources, onError: (err: Error) => void): Promise<StatusServer> {
  const problem = folderProblem(dirname(path));
  if (problem) throw new Error(`status socket ${path}: ${problem}`);
  await removeStaleSocket(path, 'status socket');
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    // Absolute: a client that trickles bytes or never reads is cut at the deadline.
    const timer = setTimeout(() => socket.destroy(), STATUS_LIMITS.deadlineMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    let got = '';
    const answer = (body: object) => {
      socket.removeAllListeners('data');
      socket.end(JSON.stringify(body) + '\n');
    };
    socket.on('data', (b: Buffer) => {
      got += b.toString('latin1');
      if (got.length > STATUS_LIMITS.maxRequestBytes) {
        answer({ ok: false, error: `request longer than ${STATUS_LIMITS.maxRequestBytes} bytes` });
        return;
      }
      const nl = got.indexOf('\n');
      if (nl < 0) return;
      const request = got.slice(0, nl).trim();
      if (request !== STATUS_REQUEST) {
        answer({ ok: false, error: `unknown request ${JSON.stringify(request.slice(0, 32))}: the only one is "${STATUS_REQUEST}"` });
        return;
      }
      socket.removeAllListeners('data');
      report(sources).then(
        (r) => socket.end(JSON.stringify(r) + '\n'),
        (err: unknown) => {
          onError(new Error('status: the report failed', { cause: err }));
          socket.end(JSON.stringify({ ok: false, error: 'the report failed; see the broker log' }) + '\n');
        },
      );
    });
  });
  server.maxConnections = STATUS_LIMITS.maxConnections;
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(new Error(`status socket: cannot listen on ${path}: ${err.message}`, { cause: err }));
    server.once('error', failed);
    // Created 0600: no one else can connect before the chmod below makes it sure.
    const umask = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', failed);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  });
  // Later errors (a failed accept) are reported, never an uncaught exception that ends the daemon.
  server.on('error', (err) => onError(new Error(`status socket: ${err.message}`, { cause: err })));
  chmodSync(path, 0o600);
  // The status socket alone must not keep a stopping daemon alive.
  server.unref();
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
