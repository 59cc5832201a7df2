// The fence_virt door's TCP listeners (what `fence_virt -T HOST -p PORT` and
// fence_virtd's tcp listener speak), IPv4 and IPv6. A connection carries one
// request: the 176-byte packet, both challenges, the one reply byte (or a
// hostlist). Bounded like the SSH door: connections overall and per source
// address, and an absolute read deadline from accept (bytes trickled in do not
// extend it); the door bounds the hashing of requests no key verifies.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { RefusalRecord } from '../../audit.js';
import { ShortRead, doorName, peerOf, readExactly, type FenceVirtDoor, type Source } from './door.js';
import { HASH_FIELD, REQUEST_SIZE } from './wire.js';

export interface FenceVirtTcpLimits {
  /** Open connections, all sources. */
  maxConnections: number;
  /** Open connections from one source address. */
  maxPerSource: number;
  /** From accept until the whole request is read, ms. */
  readTimeoutMs: number;
}

export interface FenceVirtTcpOptions {
  listen: { host: string; port: number }[];
  door: FenceVirtDoor;
  limits: FenceVirtTcpLimits;
  /** Per-request lines (a read cut short or too slow): one each. */
  audit: (r: RefusalRecord) => void;
  /** Connection-level refusals (limits): the audit's throttled refusals. */
  refused: (r: RefusalRecord) => void;
  log: Logger;
}

export interface FenceVirtTcp {
  /** The addresses bound, with the ports the kernel chose for port 0. */
  addresses: { host: string; port: number }[];
  counts(): { connections: number };
  close(): Promise<void>;
}

const DOOR = doorName('tcp');

/** A socket's peer as the door sees it; IPv4-mapped IPv6 addresses (a dual-stack listener) are IPv4. */
export function sourceOf(socket: Socket): Source {
  const raw = socket.remoteAddress ?? '?';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
  const address = mapped ? (mapped[1] as string) : raw;
  return { address, port: socket.remotePort ?? 0, family: address.includes(':') ? 'IPv6' : 'IPv4' };
}

export async function startFenceVirtTcp(o: FenceVirtTcpOptions): Promise<FenceVirtTcp> {
  const L = o.limits;
  const sockets = new Set<Socket>();
  const bySource = new Map<string, number>();

  const onConnection = (socket: Socket): void => {
    socket.on('error', () => undefined);
    const source = sourceOf(socket);
    const peer = peerOf(source);
    if (sockets.size >= L.maxConnections) {
      o.refused({ event: 'refusal', kind: 'connection_refused', door: DOOR, peer, why: `max_connections (${L.maxConnections})` });
      socket.destroy();
      return;
    }
    const n = bySource.get(source.address) ?? 0;
    if (n >= L.maxPerSource) {
      o.refused({ event: 'refusal', kind: 'connection_refused', door: DOOR, peer, why: `max_connections_per_source (${L.maxPerSource})` });
      socket.destroy();
      return;
    }
    sockets.add(socket);
    bySource.set(source.address, n + 1);
    socket.once('close', () => {
      sockets.delete(socket);
      const left = (bySource.get(source.address) ?? 1) - 1;
      if (left > 0) bySource.set(source.address, left);
      else bySource.delete(source.address);
    });
    socket.setNoDelay(true);
    void handle(socket, source, peer);
  };

  const handle = async (socket: Socket, source: Source, peer: string): Promise<void> => {
    let packet: Buffer;
    try {
      packet = await readExactly(socket, REQUEST_SIZE, AbortSignal.timeout(L.readTimeoutMs));
    } catch (err) {
      const got = socket.readableLength;
      // The audit line first, then the close: whoever sees the close may look for the line.
      if ((err as Error).name === 'TimeoutError') {
        o.audit({ event: 'refusal', kind: 'fence_virt_read_timeout', door: DOOR, peer, why: `request not complete within read_timeout (${L.readTimeoutMs} ms); ${got} bytes read` });
      } else if (err instanceof ShortRead && err.bytes.length === 0) {
        // A bare connect-and-close (a port probe) sends no request: nothing to record per request.
        o.log.debug({ peer }, 'fence_virt: connection closed before any byte');
      } else if (err instanceof ShortRead) {
        // Short: a packet of the wrong size; the door says so (one line) and counts it against the source.
        o.door.accept(err.bytes, source, 'tcp');
      } else {
        o.audit({ event: 'refusal', kind: 'fence_virt_malformed', door: DOOR, peer, why: (err as Error).message });
      }
      socket.destroy();
      return;
    }
    // The client writes its challenge (64 bytes) right after the request; anything beyond is no fence_virt client.
    if (socket.readableLength > HASH_FIELD) {
      const extra = socket.read() as Buffer;
      o.door.accept(Buffer.concat([packet, extra]), source, 'tcp');
      socket.destroy();
      return;
    }
    const accepted = o.door.accept(packet, source, 'tcp');
    if (!accepted) {
      socket.destroy();
      return;
    }
    try {
      await o.door.serve(accepted, socket);
    } catch (err) {
      o.log.error({ err, peer }, 'fence_virt/tcp: serve failed');
      socket.destroy();
    }
  };

  const servers: Server[] = [];
  const addresses: { host: string; port: number }[] = [];
  try {
    for (const l of o.listen) {
      const server = createServer({ noDelay: true, pauseOnConnect: false }, onConnection);
      server.maxConnections = L.maxConnections + 16; // the door's own bound refuses with an audit line first
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // ipv6Only: "::" listens on IPv6 alone, so a second listener on 0.0.0.0 (same port) is possible.
        server.listen({ host: l.host, port: l.port, ipv6Only: l.host.includes(':') }, () => {
          server.off('error', reject);
          // A failed accept (EMFILE, ENOMEM) is logged, never an uncaught exception that ends every fence.
          server.on('error', (err) => o.log.error({ err }, `fence_virt/tcp: ${err.message}`));
          resolve();
        });
      });
      servers.push(server);
      addresses.push({ host: l.host, port: (server.address() as { port: number }).port });
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw new Error(`fence_virt: cannot listen on ${o.listen.map((l) => `${l.host}:${l.port}`).join(', ')}: ${(err as Error).message}`, { cause: err });
  }
  return {
    addresses,
    counts: () => ({ connections: sockets.size }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
