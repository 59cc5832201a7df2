// The SSH front door: public-key authentication only, each key one identity;
// one exec command per channel, answered with one JSON line and an exit status.
// No shell, no pty, no forwarding, no subsystems. Limits on connections,
// authentication attempts and idle time.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { Logger } from 'pino';
import type { Limits } from './config/load.js';
import type { Handled } from './broker.js';
import type { Identity, IdentityIndex } from './identity/index.js';
import { fingerprintOf } from './identity/keys.js';

export interface FrontDoorOptions {
  host: string;
  port: number;
  hostKey: Buffer;
  identities: () => IdentityIndex;
  limits: Limits;
  handle: (who: Identity, peer: string, command: string) => Promise<Handled>;
  log: Logger;
}

export interface FrontDoor {
  port: number;
  close(): Promise<void>;
}

/**
 * The host key: created (ed25519, 0600) on first start, reused after. A key
 * readable by group or others is refused, as sshd does.
 */
export function loadOrCreateHostKey(path: string): { key: Buffer; fingerprint: string; created: boolean } {
  let created = false;
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const pair = ssh2.utils.generateKeyPairSync('ed25519');
    writeFileSync(path, pair.private, { mode: 0o600, flag: 'wx' });
    writeFileSync(`${path}.pub`, pair.public + '\n', { mode: 0o644 });
    chmodSync(path, 0o600);
    created = true;
  }
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) throw new Error(`host key ${path} is accessible by group or others (mode ${mode.toString(8)}); chmod 600 it`);
  const key = readFileSync(path);
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error(`host key ${path}: ${parsed instanceof Error ? parsed.message : 'several keys'}`);
  return { key, fingerprint: fingerprintOf(parsed.getPublicSSH()), created };
}

export function startFrontDoor(o: FrontDoorOptions): Promise<FrontDoor> {
  // Sockets still in the SSH handshake, by remote port: a silent TCP client is
  // dropped after the idle timeout instead of holding a slot for ever.
  const handshaking = new Map<string, Socket>();
  const server = new ssh2.Server(
    { hostKeys: [o.hostKey], ident: 'fence-broker', banner: undefined, highWaterMark: 64 * 1024 },
    (client, info) => {
      const peer = `${info.ip}:${info.port}`;
      handshaking.get(peer)?.setTimeout(0);
      handshaking.delete(peer);
      let who: Identity | undefined;
      let attempts = 0;
      let busy = 0;
      let idle: NodeJS.Timeout | undefined;
      const armIdle = () => {
        if (idle) clearTimeout(idle);
        if (busy === 0) idle = setTimeout(() => client.end(), o.limits.idleTimeoutMs);
      };
      armIdle();
      client.on('close', () => {
        if (idle) clearTimeout(idle);
      });
      client.on('error', (err) => o.log.debug({ peer, err: err.message }, 'client error'));

      client.on('authentication', (ctx) => {
        attempts++;
        if (attempts > o.limits.maxAuthAttempts) {
          o.log.warn({ peer }, 'too many authentication attempts');
          ctx.reject([]);
          client.end();
          return;
        }
        if (ctx.method !== 'publickey') {
          ctx.reject(['publickey']);
          return;
        }
        const entry = o.identities().lookup(ctx.key.data);
        const sameKey =
          entry !== undefined &&
          entry.key.type === ctx.key.algo.replace(/^rsa-sha2-(256|512)$/, 'ssh-rsa') &&
          timingSafeEqual(entry.key.getPublicSSH(), ctx.key.data);
        if (!entry || !sameKey) {
          o.log.info({ peer, fingerprint: fingerprintOf(ctx.key.data) }, 'unknown key refused');
          ctx.reject(['publickey']);
          return;
        }
        // Without a signature the client only asks whether the key would do.
        if (ctx.signature && ctx.blob && entry.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
          ctx.reject(['publickey']);
          return;
        }
        if (ctx.signature) who = entry.identity;
        ctx.accept();
      });

      client.on('ready', () => {
        armIdle();
        client.on('session', (accept) => {
          const session = accept();
          let used = false;
          const run = async (command: string, channel: ssh2.ServerChannel) => {
            busy++;
            if (idle) clearTimeout(idle);
            try {
              const { reply, exitCode } = await o.handle(who as Identity, peer, command);
              channel.write(JSON.stringify(reply) + '\n');
              channel.exit(exitCode);
            } catch (err) {
              o.log.error({ peer, err: (err as Error).message }, 'request failed');
              channel.exit(1);
            } finally {
              channel.end();
              busy--;
              armIdle();
            }
          };
          session.on('exec', (acceptExec, reject, info) => {
            if (used || !who) return reject?.();
            used = true;
            void run(info.command, acceptExec());
          });
          // A bare `ssh broker` asks for a shell: answer as a malformed request.
          session.on('shell', (acceptShell, reject) => {
            if (used || !who) return reject?.();
            used = true;
            void run('', acceptShell());
          });
          for (const ev of ['pty', 'env', 'x11', 'subsystem', 'sftp', 'auth-agent', 'signal'] as const) {
            session.on(ev as 'pty', (_a: unknown, reject?: () => void) => reject?.());
          }
        });
        client.on('tcpip', (_a, reject) => reject());
        client.on('openssh.streamlocal', (_a, reject) => reject());
        client.on('request', (_a, reject) => reject?.());
      });
    },
  );
  // TCP is accepted here and handed to ssh2, so the connection limit and the
  // handshake timeout apply before any SSH byte is read.
  const tcp = new NetServer((socket) => {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    handshaking.set(key, socket);
    socket.once('close', () => handshaking.delete(key));
    socket.setTimeout(o.limits.idleTimeoutMs, () => socket.destroy());
    server.injectSocket(socket);
  });
  tcp.maxConnections = o.limits.maxConnections;
  return new Promise((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(o.port, o.host, () => {
      tcp.off('error', reject);
      const addr = tcp.address() as { port: number };
      resolve({
        port: addr.port,
        close: () => new Promise<void>((r) => tcp.close(() => r())),
      });
    });
  });
}
