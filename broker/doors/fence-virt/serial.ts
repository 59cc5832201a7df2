// The serial channel door's transport: one UNIX-socket connection per domain
// channel (the host end of the guest's /dev/ttyS1, a QEMU chardev socket the
// domain's XML binds inside the channels dir), fence_virt's serial protocol
// on it. Channels are independent: each has its own framer, rate limit and
// one-deep queue (a request served while at most one waits; more are
// dropped and counted), so one guest's flood, noise or stall never delays
// another guest's fence. A channel whose socket closes is reconnected with
// backoff while its domain is listed; removed when discovery says it is gone.
import { connect, type Socket } from 'node:net';
import { lstat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { RefusalRecord } from '../../audit.js';
import { channelPeer, SERIAL_DOOR, type ChannelRequest } from './door.js';
import { SerialFramer, decodeSerialRequest, type SerialRequest } from './serial-wire.js';
import { WireError } from './wire.js';

export interface SerialChannelsOptions {
  /** The door's entry for a channel-proven identity (FenceVirtDoor.serveChannel). */
  serve: (c: ChannelRequest, gone: AbortSignal) => Promise<Buffer | undefined>;
  /** The channels dir: a path not directly inside it is never connected to (discovery checks it too). */
  dir: string;
  /** From a request's first byte to its last, ms. */
  readTimeoutMs: number;
  /** Per channel: a token bucket of `burst` refilled at this rate. */
  requestsPerSecond: number;
  burst: number;
  /** One audit line for a request the transport ends itself, and the per-window summaries; never throws. */
  audit: (r: RefusalRecord) => void;
  log: Logger;
  /** Reconnect backoff (default 250 ms doubling to 5 s). */
  backoff?: { minMs: number; maxMs: number };
  /** The drop summaries' window, ms (default 10 s). */
  windowMs?: number;
}

export interface ChannelInfo {
  domain: string;
  path: string;
  connected: boolean;
  /** Since the channel was added. */
  served: number;
  garbageBytes: number;
  overRate: number;
  queueFull: number;
  timedOut: number;
}

/** A reply this far behind on a channel (a guest that does not read) is not written. */
const MAX_UNSENT = 64 * 1024;

class Channel {
  socket: Socket | undefined;
  connected = false;
  closed = false;
  /** Aborted when the current connection closes: the request in progress then has no client. */
  private gone = new AbortController();
  private readonly framer: SerialFramer;
  private tokens: number;
  private refilled = performance.now();
  private busy = false;
  private waiting: SerialRequest | undefined;
  private retryMs: number;
  private retry: NodeJS.Timeout | undefined;
  // Totals, and what the last summary line reported.
  served = 0;
  overRate = 0;
  queueFull = 0;
  private reported = { garbage: 0, overRate: 0, queueFull: 0 };
  private windowStart = performance.now();

  constructor(
    readonly domain: string,
    readonly path: string,
    private readonly o: SerialChannelsOptions & { backoff: { minMs: number; maxMs: number }; windowMs: number },
  ) {
    this.tokens = o.burst;
    this.retryMs = o.backoff.minMs;
    this.framer = new SerialFramer({
      readTimeoutMs: o.readTimeoutMs,
      frame: (b) => this.onFrame(b),
      timeout: (held) => {
        this.o.audit({
          event: 'refusal', kind: 'fence_virt_read_timeout', door: SERIAL_DOOR, peer: channelPeer(domain), channel: path, channel_domain: domain, bytes: held,
          why: `request not complete within read_timeout (${o.readTimeoutMs} ms) of its first byte; ${held} bytes dropped, nothing done`,
        });
      },
    });
    this.connect();
  }

  get garbage(): number {
    return this.framer.garbage;
  }

  get timedOut(): number {
    return this.framer.timedOut;
  }

  private connect(): void {
    if (this.closed) return;
    this.retry = undefined;
    // Only a socket, never a symlink or anything else that happens to have the name.
    lstat(this.path).then(
      (st) => {
        if (this.closed) return;
        if (!st.isSocket()) {
          this.o.log.warn({ channel: this.path, domain: this.domain }, `fence_virt/serial: ${this.path} is not a socket; not connected`);
          this.later();
          return;
        }
        this.open();
      },
      (err: NodeJS.ErrnoException) => {
        this.o.log.debug({ channel: this.path, domain: this.domain, err: err.code }, 'fence_virt/serial: channel socket not there (yet)');
        this.later();
      },
    );
  }

  private open(): void {
    const s = connect({ path: this.path });
    this.socket = s;
    const gone = new AbortController();
    this.gone = gone;
    s.on('connect', () => {
      this.connected = true;
      this.retryMs = this.o.backoff.minMs;
      this.o.log.info({ channel: this.path, domain: this.domain }, `fence_virt/serial: connected to ${this.domain}'s channel`);
    });
    s.on('data', (chunk: Buffer) => {
      if (this.socket === s) this.framer.push(chunk);
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      this.o.log.debug({ channel: this.path, domain: this.domain, err: err.code ?? err.message }, 'fence_virt/serial: channel socket error');
    });
    s.on('close', () => {
      gone.abort(new Error(`channel ${this.path} closed`));
      if (this.socket !== s) return;
      if (this.connected) this.o.log.info({ channel: this.path, domain: this.domain }, `fence_virt/serial: ${this.domain}'s channel closed`);
      this.connected = false;
      this.socket = undefined;
      // What was half read or waiting came from a connection that is gone.
      this.framer.reset();
      this.waiting = undefined;
      this.later();
    });
  }

  /** The domain was seen (re)started: a connection waiting out its backoff is tried now. */
  kick(): void {
    if (this.closed || this.socket || !this.retry) return;
    clearTimeout(this.retry);
    this.retryMs = this.o.backoff.minMs;
    this.connect();
  }

  /** Reconnects after the backoff, while the channel is known. */
  private later(): void {
    if (this.closed || this.retry) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.o.backoff.maxMs, this.retryMs * 2);
    this.retry = setTimeout(() => this.connect(), wait);
    this.retry.unref();
  }

  private onFrame(bytes: Buffer): void {
    let req: SerialRequest;
    try {
      req = decodeSerialRequest(bytes);
    } catch (err) {
      // The framer hands on only what decodes; said for safety all the same.
      if (!(err instanceof WireError)) throw err;
      this.o.audit({ event: 'refusal', kind: 'fence_virt_malformed', door: SERIAL_DOOR, peer: channelPeer(this.domain), channel: this.path, channel_domain: this.domain, why: err.message });
      return;
    }
    if (!this.take()) {
      this.overRate++;
      return;
    }
    if (this.busy) {
      if (this.waiting === undefined) this.waiting = req;
      else this.queueFull++;
      return;
    }
    void this.serve(req);
  }

  /** One token of the channel's bucket; false: over the rate, the request is dropped. */
  private take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.o.burst, this.tokens + ((now - this.refilled) / 1000) * this.o.requestsPerSecond);
    this.refilled = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private async serve(req: SerialRequest): Promise<void> {
    this.busy = true;
    const socket = this.socket;
    let reply: Buffer | undefined;
    try {
      reply = await this.o.serve({ channel: this.path, domain: this.domain, request: req }, this.gone.signal);
      this.served++;
    } catch (err) {
      this.o.log.error({ err, channel: this.path, domain: this.domain }, 'fence_virt/serial: serving a request failed');
    }
    // Only on the connection the request came in on: a new one is a new guest run.
    if (reply && socket && socket === this.socket && !socket.destroyed) {
      if (socket.writableLength > MAX_UNSENT) {
        this.o.log.warn({ channel: this.path, domain: this.domain, unsent: socket.writableLength }, 'fence_virt/serial: the guest does not read its channel; reply not written');
      } else {
        socket.write(reply);
      }
    }
    this.busy = false;
    const next = this.waiting;
    this.waiting = undefined;
    if (next && !this.closed) void this.serve(next);
  }

  /** One summary line per window with what was dropped unanswered since the last one. */
  summarize(now: number, force = false): void {
    if (!force && now - this.windowStart < this.o.windowMs) return;
    this.windowStart = now;
    const garbage = this.framer.garbage - this.reported.garbage;
    const overRate = this.overRate - this.reported.overRate;
    const queueFull = this.queueFull - this.reported.queueFull;
    this.reported = { garbage: this.framer.garbage, overRate: this.overRate, queueFull: this.queueFull };
    if (garbage + overRate + queueFull === 0) return;
    this.o.audit({
      event: 'refusal', kind: 'fence_virt_channel_dropped', door: SERIAL_DOOR, peer: channelPeer(this.domain), channel: this.path, channel_domain: this.domain,
      garbage_bytes: garbage, over_rate: overRate, queue_full: queueFull,
      why: `dropped unanswered on this channel: ${garbage} bytes that were no request, ${overRate} requests over ${this.o.requestsPerSecond}/s (burst ${this.o.burst}), ${queueFull} requests while one was served and one waited`,
    });
  }

  info(): ChannelInfo {
    return { domain: this.domain, path: this.path, connected: this.connected, served: this.served, garbageBytes: this.garbage, overRate: this.overRate, queueFull: this.queueFull, timedOut: this.timedOut };
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.framer.reset();
    this.waiting = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    this.connected = false;
    this.summarize(performance.now(), true);
  }
}

/** The channels the broker serves, by domain. */
export class SerialChannels {
  private readonly channels = new Map<string, Channel>();
  private readonly timer: NodeJS.Timeout;
  private readonly o: SerialChannelsOptions & { backoff: { minMs: number; maxMs: number }; windowMs: number };

  constructor(o: SerialChannelsOptions) {
    this.o = { ...o, backoff: o.backoff ?? { minMs: 250, maxMs: 5_000 }, windowMs: o.windowMs ?? 10_000 };
    const w = this.o.windowMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.channels.values()) c.summarize(now);
    }, Math.max(250, Math.floor(w / 4)));
    this.timer.unref();
  }

  /**
   * Serves `domain`'s channel at `path` (connecting now, and again while it
   * closes); a new path replaces the old channel. False: refused, `path` is
   * not directly inside the channels dir.
   */
  add(domain: string, path: string): boolean {
    if (dirname(path) !== this.o.dir) {
      this.o.log.warn({ domain, channel: path }, `fence_virt/serial: ${path} is not directly inside ${this.o.dir}; not connected`);
      return false;
    }
    const had = this.channels.get(domain);
    if (had?.path === path) {
      // Seen again (restarted between two looks): its new socket need not wait out the backoff.
      had.kick();
      return true;
    }
    had?.close();
    this.channels.set(domain, new Channel(domain, path, this.o));
    return true;
  }

  /** The domain is gone: its channel is closed and forgotten (a request in progress loses its client). */
  remove(domain: string): void {
    const c = this.channels.get(domain);
    if (!c) return;
    c.close();
    this.channels.delete(domain);
  }

  list(): ChannelInfo[] {
    return [...this.channels.values()].map((c) => c.info());
  }

  counts(): { connected: number; known: number } {
    let connected = 0;
    for (const c of this.channels.values()) if (c.connected) connected++;
    return { connected, known: this.channels.size };
  }

  close(): void {
    clearInterval(this.timer);
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }
}
