// A fault-injecting TCP proxy between a broker and one etcd member. gRPC is
// HTTP/2 over TCP, so faults made on the bytes are real to both ends: the
// answers held back for a while (all of them, or from the moment a request
// carrying given bytes passes: mark values are JSON inside the protobuf, so a
// commit writing a mark can be picked out), the requests held, every
// connection dropped. Bound to 127.0.0.1 port 0.
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

export interface EtcdProxy {
  /** http://127.0.0.1:<port>, for the broker's coordination.endpoints. */
  endpoint: string;
  /** Answers (etcd to broker) are held for `ms` from now, then delivered in order. */
  holdAnswers(ms: number): void;
  /** Requests (broker to etcd) are held for `ms` from now, then delivered in order. */
  holdRequests(ms: number): void;
  /**
   * Whenever a request carrying `marker` passes (and `fire()`, if given, says
   * so), answers are held for `ms` from then (and, once delivered, `again` ms
   * more: etcd slow for a while, answering once in between), until `stop()`.
   * `seen` lists when each such request passed.
   */
  onRequest(marker: string, ms: number, o?: { fire?: () => boolean; again?: number }): { seen: number[]; stop(): void };
  /** Every connection cut at once (the broker reconnects). */
  dropAll(): void;
  /** Bytes passed so far, per direction. */
  bytes: { up: number; down: number };
  close(): Promise<void>;
}

interface Direction {
  until: number;
  /** Once the held bytes are delivered, hold again this long (0: not). */
  again: number;
  queue: Buffer[];
  timer: NodeJS.Timeout | undefined;
}

export async function startEtcdProxy(upstream: string): Promise<EtcdProxy> {
  const u = new URL(upstream);
  const sockets = new Set<Socket>();
  const up: Direction = { until: 0, again: 0, queue: [], timer: undefined };
  const down: Direction = { until: 0, again: 0, queue: [], timer: undefined };
  const rules = new Set<{ marker: Buffer; ms: number; seen: number[]; fire: () => boolean; again: number }>();
  const bytes = { up: 0, down: 0 };
  // Each direction's writers, by connection: held chunks keep their connection.
  const pending = new WeakMap<Buffer, Socket>();

  const flush = (d: Direction) => {
    d.timer = undefined;
    const wait = d.until - Date.now();
    if (wait > 0) {
      d.timer = setTimeout(() => flush(d), wait);
      return;
    }
    for (const chunk of d.queue.splice(0)) {
      const to = pending.get(chunk);
      if (to && !to.destroyed) to.write(chunk);
    }
    if (d.again > 0) {
      d.until = Date.now() + d.again;
      d.again = 0;
    }
  };
  const send = (d: Direction, to: Socket, chunk: Buffer) => {
    if (Date.now() < d.until || d.queue.length > 0) {
      pending.set(chunk, to);
      d.queue.push(chunk);
      if (!d.timer) d.timer = setTimeout(() => flush(d), Math.max(0, d.until - Date.now()));
    } else if (!to.destroyed) to.write(chunk);
  };
  const hold = (d: Direction, ms: number) => {
    d.until = Math.max(d.until, Date.now() + ms);
  };

  const server = createServer((client) => {
    const target = connect(Number(u.port), u.hostname);
    sockets.add(client);
    sockets.add(target);
    let tail = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      bytes.up += chunk.length;
      // A marker may straddle two chunks: look at the end of the last one too.
      const seen = Buffer.concat([tail, chunk]);
      let matched = false;
      for (const r of rules) {
        if (seen.includes(r.marker)) {
          matched = true;
          r.seen.push(Date.now());
          if (r.fire()) {
            hold(down, r.ms);
            down.again = r.again;
          }
        }
      }
      // Once matched, not again: the same request is counted once.
      tail = matched ? Buffer.alloc(0) : seen.subarray(Math.max(0, seen.length - 255));
      send(up, target, chunk);
    });
    target.on('data', (chunk: Buffer) => {
      bytes.down += chunk.length;
      send(down, client, chunk);
    });
    const end = () => {
      client.destroy();
      target.destroy();
      sockets.delete(client);
      sockets.delete(target);
    };
    client.on('error', end).on('close', end);
    target.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    holdAnswers: (ms) => hold(down, ms),
    holdRequests: (ms) => hold(up, ms),
    onRequest: (marker, ms, o = {}) => {
      const rule = { marker: Buffer.from(marker), ms, seen: [] as number[], fire: o.fire ?? (() => true), again: o.again ?? 0 };
      rules.add(rule);
      return { seen: rule.seen, stop: () => rules.delete(rule) };
    },
    dropAll: () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    bytes,
    close: async () => {
      for (const d of [up, down]) clearTimeout(d.timer);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
