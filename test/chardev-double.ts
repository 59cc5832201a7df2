// A TEST DOUBLE of QEMU's chardev socket in bind (server) mode: what a
// domain's `<serial type='unix'><source mode='bind' path='…'/>` makes on the
// host. It listens at `path` and accepts the broker's connection; the test
// plays the guest's side of the serial line (the bytes fence_virt -D writes
// into /dev/ttyS1 and reads back). Used where the test must write the guest's
// bytes itself; a real guest (test/guest) shows the same against real QEMU.
import { createServer, type Server, type Socket } from 'node:net';
import { decodeSerialReply } from '../broker/doors/fence-virt/serial-wire.js';

export class ChardevDouble {
  /** Every connection accepted, in order (the broker reconnects after a drop). */
  readonly connections: Socket[] = [];
  /** Bytes the broker wrote on the current connection, not yet taken by reply(). */
  received = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {
    server.on('connection', (s) => {
      s.on('error', () => undefined);
      this.connections.push(s);
      this.received = Buffer.alloc(0);
      s.on('data', (b: Buffer) => {
        if (s === this.current) this.received = Buffer.concat([this.received, b]);
        this.wake();
      });
      s.on('close', () => this.wake());
      this.wake();
    });
  }

  static async listen(path: string): Promise<ChardevDouble> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new ChardevDouble(path, server);
  }

  get current(): Socket | undefined {
    return this.connections.at(-1);
  }

  /** Resolves when `check()` holds, re-checked on every connection, byte and close; fails after `timeoutMs`. */
  async until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!check()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`chardev double ${this.path}: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1_000));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the broker's `n`th connection (1-based), open. */
  async connected(n = 1, timeoutMs = 30_000): Promise<Socket> {
    await this.until(`connection ${n}`, () => this.connections.length >= n && !(this.connections[n - 1] as Socket).destroyed, timeoutMs);
    return this.connections[n - 1] as Socket;
  }

  /** Writes the guest's bytes on the current connection. */
  write(b: Buffer): void {
    const s = this.current;
    if (!s || s.destroyed) throw new Error(`chardev double ${this.path}: no connection to write on`);
    s.write(b);
  }

  /** The next whole reply on the current connection (magic + code; a hostlist whole), taken off `received`. */
  async reply(timeoutMs = 30_000): Promise<NonNullable<ReturnType<typeof decodeSerialReply>>> {
    let r: ReturnType<typeof decodeSerialReply>;
    await this.until('a reply', () => (r = decodeSerialReply(this.received)) !== undefined, timeoutMs);
    const got = r as NonNullable<typeof r>;
    this.received = this.received.subarray(got.bytes);
    return got;
  }

  /** QEMU going away: the broker's connection is closed from this side. */
  drop(): void {
    this.current?.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.connections) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
