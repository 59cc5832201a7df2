// The SSH front door: public-key authentication only, each key one identity;
// one exec command per channel, answered with one JSON line and an exit status.
// No shell, no pty, no forwarding, no subsystems. Slots cannot be hoarded
// (docs/design.md §3.8): TCP is accepted here, before ssh2 sees a byte, so every
// connection is counted from its first moment — unauthenticated ones overall
// and per source address, authenticated ones per identity and per cluster —
// and every timeout destroys the socket. Revocation is immediate (§3.9).
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { Logger } from 'pino';
import type { Limits } from '../config/load.js';
import type { RefusalRecord } from '../audit.js';
import type { Handled, RequestContext } from '../broker.js';
import type { Identity, IdentityIndex } from '../identity/index.js';
import { fingerprintOf, signatureProblem } from '../identity/keys.js';
import { generateEd25519 } from '../identity/keygen.js';
import type { DoorStatus } from '../status.js';

export interface FrontDoorOptions {
  host: string;
  port: number;
  hostKey: Buffer;
  identities: () => IdentityIndex;
  limits: Limits;
  handle: (who: Identity, peer: string, command: string, ctx: RequestContext) => Promise<Handled>;
  /** Refusals before a request exists (audited, rate-limited by the audit). */
  refused: (r: RefusalRecord) => void;
  log: Logger;
}

/** This door's name in the metrics' door label (other doors name themselves). */
export const DOOR = 'ssh';

/** Beyond this an exec command is not even parsed: the channel is refused (the grammar's own limit is far lower). */
const MAX_COMMAND_BYTES = 1024;

/**
 * Everything the door negotiates, pinned so that an ssh2 upgrade cannot change
 * it silently (README "Algorithms offered"; test/broker/ssh-algorithms.test.ts
 * reads it back through OpenSSH). No compression: requests and replies are
 * under a kilobyte, and ssh2's `zlib` inflates before authentication, where
 * the packet limit bounds only the compressed size. No finite-field DH: an
 * 8192-bit group costs the server ~100 times an X25519 exchange for a client
 * that has not authenticated, and ssh2 advertises group exchange without
 * implementing it as a server. SHA-2 encrypt-then-MAC only (the AEAD ciphers
 * carry their own). ed25519 host keys only (loadOrCreateHostKey).
 */
export const SSH_ALGORITHMS = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521'],
  serverHostKey: ['ssh-ed25519'],
  cipher: ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-gcm@openssh.com', 'aes256-ctr', 'aes192-ctr', 'aes128-ctr'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  compress: ['none'],
} satisfies ssh2.Algorithms;

/** Client-supplied names (auth methods, key algorithms, request names) go to the audit at most this long. */
const MAX_CLIENT_NAME = 64;
const clientName = (s: string): string => (s.length > MAX_CLIENT_NAME ? `${s.slice(0, MAX_CLIENT_NAME)}… (${s.length} chars)` : s);

export interface FrontDoor {
  port: number;
  /**
   * After a reload: closes every connection whose key no longer maps to the
   * same identity, aborting its requests. Returns how many were closed.
   */
  revoke(): number;
  /** Connections by state, for tests, diagnostics and the metrics. */
  counts(): { unauthenticated: number; authenticated: number };
  /** This door in fencectl status. */
  report(): DoorStatus;
  close(): Promise<void>;
}

/**
 * The host key: created (ed25519, 0600) on first start, reused after. It is
 * generated with node:crypto and checked to parse before it is written (ssh2's
 * own generator makes about one key in 256 unusable). A symlink, or a key
 * readable by group or others, is refused, as sshd does.
 */
export function loadOrCreateHostKey(path: string): { key: Buffer; fingerprint: string; created: boolean } {
  let created = false;
  if (!existsSync(path) && !isSymlink(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 }); // its folder is the broker's alone (the status socket lives there too)
    const pair = generateEd25519();
    const check = ssh2.utils.parseKey(pair.private);
    if (check instanceof Error || Array.isArray(check)) throw new Error(`generated host key does not parse: ${check instanceof Error ? check.message : 'several keys'}`);
    writeFileSync(path, pair.private, { mode: 0o600, flag: 'wx' });
    writeFileSync(`${path}.pub`, pair.public + '\n', { mode: 0o644 });
    chmodSync(path, 0o600);
    created = true;
  }
  const st = lstatSync(path);
  if (st.isSymbolicLink()) throw new Error(`host key ${path} is a symlink; it must be a regular file`);
  const mode = st.mode & 0o777;
  if (mode & 0o077) throw new Error(`host key ${path} is accessible by group or others (mode ${mode.toString(8)}); chmod 600 it`);
  const key = readFileSync(path);
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error(`host key ${path}: ${parsed instanceof Error ? parsed.message : 'several keys'}`, { cause: parsed });
  if (parsed.type !== 'ssh-ed25519') throw new Error(`host key ${path} is ${parsed.type}; the broker offers ed25519 host keys only (make one with ssh-keygen -t ed25519, then re-pin host_key_fingerprint on the nodes)`);
  return { key, fingerprint: fingerprintOf(parsed.getPublicSSH()), created };
}

const isSymlink = (path: string): boolean => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
};

/** One TCP connection, from accept to close. */
interface Conn {
  socket: Socket;
  source: string;
  /** Set once a key is proven (signature checked) and a slot for it was free. */
  who?: Identity;
  blob?: Buffer;
  /** Requests running on it: their "client gone" signals. */
  running: Set<AbortController>;
}

const sameIdentity = (a: Identity, b: Identity): boolean =>
  a.kind === 'node' && b.kind === 'node'
    ? a.cluster === b.cluster && a.node === b.node && a.domain === b.domain
    : a.kind === 'admin' && b.kind === 'admin' && a.admin === b.admin;

/** The per-cluster slot key of an identity; admins have none. */
const clusterOf = (who: Identity): string | undefined => (who.kind === 'node' ? who.cluster : undefined);

const bump = (m: Map<string, number>, key: string, by: number): void => {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
};

export function startFrontDoor(o: FrontDoorOptions): Promise<FrontDoor> {
  const L = o.limits;
  const refuse = (kind: string, peer: string, fields: Record<string, unknown> = {}) => o.refused({ event: 'refusal', kind, door: DOOR, peer, ...fields });
  const conns = new Map<string, Conn>(); // by remote address:port
  const unauthBySource = new Map<string, number>();
  let unauthenticated = 0;
  const byIdentity = new Map<string, number>();
  const byCluster = new Map<string, number>();

  /** Moves a connection to the authenticated slots, if its identity and cluster have room. */
  const takeSlot = (conn: Conn, who: Identity, blob: Buffer): string | undefined => {
    if ((byIdentity.get(who.fingerprint) ?? 0) >= L.maxPerIdentity) return `identity at max_per_identity (${L.maxPerIdentity})`;
    const cluster = clusterOf(who);
    if (cluster !== undefined && (byCluster.get(cluster) ?? 0) >= L.maxPerCluster) return `cluster ${cluster} at max_per_cluster (${L.maxPerCluster})`;
    bump(byIdentity, who.fingerprint, 1);
    if (cluster !== undefined) bump(byCluster, cluster, 1);
    bump(unauthBySource, conn.source, -1);
    unauthenticated--;
    conn.who = who;
    conn.blob = blob;
    return undefined;
  };

  const forget = (key: string, conn: Conn): void => {
    if (conns.get(key) !== conn) return;
    conns.delete(key);
    for (const r of conn.running) r.abort(new Error('requester disconnected'));
    if (conn.who) {
      bump(byIdentity, conn.who.fingerprint, -1);
      const cluster = clusterOf(conn.who);
      if (cluster !== undefined) bump(byCluster, cluster, -1);
    } else {
      bump(unauthBySource, conn.source, -1);
      unauthenticated--;
    }
  };

  const server = new ssh2.Server({ hostKeys: [o.hostKey], algorithms: SSH_ALGORITHMS, ident: 'fence-broker', highWaterMark: 64 * 1024 }, (client, info) => {
    const peer = `${info.ip}:${info.port}`;
    const conn = conns.get(peer);
    if (!conn) {
      client.end();
      return;
    }
    const kill = () => conn.socket.destroy();
    let attempts = 0;
    let sessions = 0;
    let idle: NodeJS.Timeout | undefined;
    let ended = false;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = conn.running.size === 0 && !ended ? setTimeout(kill, L.idleTimeoutMs) : undefined;
    };
    conn.socket.once('close', () => {
      ended = true;
      if (idle) clearTimeout(idle);
    });
    client.on('error', (err) => {
      o.log.debug({ peer, err }, 'client error');
      kill();
    });

    client.on('authentication', (ctx) => {
      attempts++;
      if (attempts > L.maxAuthAttempts) {
        refuse('auth_attempts_exceeded', peer, { max_auth_attempts: L.maxAuthAttempts });
        ctx.reject([]);
        kill();
        return;
      }
      if (ctx.method !== 'publickey') {
        // "none" is how every client asks which methods exist; anything else is a real attempt.
        if (ctx.method !== 'none') refuse('auth_method_refused', peer, { method: clientName(ctx.method) });
        ctx.reject(['publickey']);
        return;
      }
      const entry = o.identities().lookup(ctx.key.data);
      const sameKey =
        entry !== undefined &&
        entry.key.type === ctx.key.algo.replace(/^rsa-sha2-(256|512)$/, 'ssh-rsa') &&
        timingSafeEqual(entry.key.getPublicSSH(), ctx.key.data);
      if (!entry || !sameKey) {
        refuse('auth_unknown_key', peer, { fingerprint: fingerprintOf(ctx.key.data), algo: clientName(ctx.key.algo) });
        ctx.reject(['publickey']);
        return;
      }
      const weak = signatureProblem(ctx.key.algo, ctx.hashAlgo);
      if (weak) {
        refuse('auth_weak_signature', peer, { fingerprint: entry.identity.fingerprint, why: weak });
        ctx.reject(['publickey']);
        return;
      }
      // Without a signature the client only asks whether the key would do.
      if (!ctx.signature) {
        ctx.accept();
        return;
      }
      if (!ctx.blob || entry.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
        refuse('auth_bad_signature', peer, { fingerprint: entry.identity.fingerprint });
        ctx.reject(['publickey']);
        return;
      }
      const full = takeSlot(conn, entry.identity, ctx.key.data);
      if (full) {
        refuse('no_slot', peer, { fingerprint: entry.identity.fingerprint, why: full });
        ctx.reject([]);
        kill();
        return;
      }
      ctx.accept();
    });

    client.on('ready', () => {
      clearTimeout(handshakeTimers.get(conn));
      handshakeTimers.delete(conn);
      armIdle();
      client.on('session', (accept, reject) => {
        if (sessions >= L.maxSessions) {
          refuse('channel_refused', peer, { fingerprint: conn.who?.fingerprint, request: 'session', why: `max_sessions (${L.maxSessions})` });
          reject();
          return;
        }
        sessions++;
        const session = accept();
        session.once('close', () => sessions--);
        let used = false;
        const run = async (command: string, channel: ssh2.ServerChannel) => {
          const gone = new AbortController();
          conn.running.add(gone);
          channel.once('close', () => gone.abort(new Error('requester closed the channel')));
          armIdle();
          try {
            const who = conn.who as Identity;
            // Revoked since this connection authenticated: nothing more on it.
            const now = conn.blob ? o.identities().lookup(conn.blob) : undefined;
            if (!now || !sameIdentity(now.identity, who)) {
              kill();
              return;
            }
            const { reply, exitCode } = await o.handle(who, peer, command, { gone: gone.signal, door: DOOR });
            if (!gone.signal.aborted) {
              channel.write(JSON.stringify(reply) + '\n');
              channel.exit(exitCode);
            }
          } catch (err) {
            o.log.error({ peer, err }, 'request failed');
            // The client still gets a reply saying what happened.
            if (!gone.signal.aborted) {
              channel.write(JSON.stringify({ ok: false, action: '', target: '', state: 'unknown', code: 'failed', message: 'internal error; nothing is known to have been done; see the broker log', request_id: '' }) + '\n');
              channel.exit(1);
            }
          } finally {
            conn.running.delete(gone);
            if (!gone.signal.aborted) channel.end();
            armIdle();
          }
        };
        const refuseChannel = (request: string, why: string, fields: Record<string, unknown> = {}) =>
          refuse('channel_refused', peer, { fingerprint: conn.who?.fingerprint, request, why, ...fields });
        session.on('exec', (acceptExec, rejectExec, info) => {
          if (used) {
            refuseChannel('exec', 'second exec on one session');
            return rejectExec?.();
          }
          if (Buffer.byteLength(info.command) > MAX_COMMAND_BYTES) {
            refuseChannel('exec', `command of ${Buffer.byteLength(info.command)} bytes (max ${MAX_COMMAND_BYTES})`, { command: info.command.slice(0, 80) });
            return rejectExec?.();
          }
          used = true;
          void run(info.command, acceptExec());
        });
        // A bare `ssh broker` asks for a shell: answer as a malformed request.
        session.on('shell', (acceptShell, rejectShell) => {
          if (used) {
            refuseChannel('shell', 'second request on one session');
            return rejectShell?.();
          }
          used = true;
          void run('', acceptShell());
        });
        for (const ev of ['pty', 'env', 'x11', 'subsystem', 'sftp', 'auth-agent', 'signal'] as const) {
          session.on(ev as 'pty', (_a: unknown, rejectIt?: () => void) => {
            refuseChannel(ev, 'not offered');
            rejectIt?.();
          });
        }
      });
      client.on('tcpip', (_a, rejectIt) => {
        refuse('channel_refused', peer, { fingerprint: conn.who?.fingerprint, request: 'direct-tcpip', why: 'no forwarding' });
        rejectIt();
      });
      client.on('openssh.streamlocal', (_a, rejectIt) => {
        refuse('channel_refused', peer, { fingerprint: conn.who?.fingerprint, request: 'streamlocal', why: 'no forwarding' });
        rejectIt();
      });
      client.on('request', (_a, rejectIt, name) => {
        refuse('channel_refused', peer, { fingerprint: conn.who?.fingerprint, request: 'global', name: clientName(String(name)), why: 'no global requests' });
        rejectIt?.();
      });
    });
  });

  const handshakeTimers = new Map<Conn, NodeJS.Timeout>();
  // TCP is accepted here and handed to ssh2, so the limits and the absolute
  // handshake deadline apply before any SSH byte is read.
  const tcp = new NetServer({ noDelay: true }, (socket) => {
    const source = socket.remoteAddress ?? '?';
    const key = `${source}:${socket.remotePort}`;
    socket.on('error', () => undefined);
    if (unauthenticated >= L.maxUnauthenticated) {
      refuse('connection_refused', key, { why: `max_unauthenticated (${L.maxUnauthenticated})` });
      socket.destroy();
      return;
    }
    if ((unauthBySource.get(source) ?? 0) >= L.maxUnauthenticatedPerSource) {
      refuse('connection_refused', key, { why: `max_unauthenticated_per_source (${L.maxUnauthenticatedPerSource})` });
      socket.destroy();
      return;
    }
    const conn: Conn = { socket, source, running: new Set() };
    conns.set(key, conn);
    unauthenticated++;
    bump(unauthBySource, source, 1);
    // Absolute: bytes trickled in do not extend it; cleared only once authenticated.
    handshakeTimers.set(
      conn,
      setTimeout(() => {
        refuse('handshake_timeout', key, { handshake_timeout_ms: L.handshakeTimeoutMs });
        socket.destroy();
      }, L.handshakeTimeoutMs),
    );
    socket.once('close', () => {
      clearTimeout(handshakeTimers.get(conn));
      handshakeTimers.delete(conn);
      forget(key, conn);
    });
    server.injectSocket(socket);
  });
  tcp.maxConnections = L.maxConnections;

  return new Promise((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(o.port, o.host, () => {
      tcp.off('error', reject);
      // A failed accept (EMFILE, ENOMEM) is logged, never an uncaught exception that ends every fence.
      tcp.on('error', (err) => o.log.error({ err }, `ssh door: ${err.message}`));
      const addr = tcp.address() as { port: number };
      resolve({
        port: addr.port,
        revoke: () => {
          let closed = 0;
          const index = o.identities();
          for (const conn of conns.values()) {
            if (!conn.who || !conn.blob) continue;
            const now = index.lookup(conn.blob);
            if (now && sameIdentity(now.identity, conn.who)) continue;
            o.log.warn({ peer: `${conn.source}`, fingerprint: conn.who.fingerprint }, 'key revoked or remapped by reload: connection closed');
            conn.socket.destroy();
            closed++;
          }
          return closed;
        },
        counts: () => {
          let authenticated = 0;
          for (const c of conns.values()) if (c.who) authenticated++;
          return { unauthenticated, authenticated };
        },
        report: () => {
          let authenticated = 0;
          let busy = 0;
          for (const c of conns.values()) {
            if (c.who) authenticated++;
            if (c.running.size) busy++;
          }
          const host = o.host.includes(':') ? `[${o.host}]` : o.host;
          return { door: DOOR, listen: `${host}:${addr.port}`, connections: { unauthenticated, authenticated, with_request_running: busy } };
        },
        close: () =>
          new Promise<void>((r) => {
            for (const c of conns.values()) c.socket.destroy();
            tcp.close(() => r());
          }),
      });
    });
  });
}
