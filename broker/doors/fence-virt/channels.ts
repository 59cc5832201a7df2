// Channel discovery for the serial door, over libvirt through virsh (argv, no
// shell; the toolstack's uri and command): which running domain binds which
// channel socket inside the channels dir. The set is kept current by
// libvirt's lifecycle events (`virsh event --all --loop`, restarted with
// backoff when it dies, as it does when libvirtd restarts) and by a full
// re-list every `rescan`. A domain's XML is read when it is new or its id
// changed (it was restarted). A socket counts only when the XML binds it
// (<source mode='bind'>) directly inside the dir, on a device of the
// configured mode: never a subfolder, never the other mode, so the guest
// agent's channel and every other socket are left alone. A failed list
// changes nothing: channels are dropped only when libvirt says the domain
// is not running.
import { execa, type ResultPromise } from 'execa';
import { XMLParser } from 'fast-xml-parser';
import { isAbsolute, posix } from 'node:path';
import type { Logger } from 'pino';
import { nameProblem } from '../../../common/names.js';
import { firstLine, run } from '../../toolstack/toolstack.js';

export type ChannelMode = 'serial' | 'vmchannel';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Devices and sources may repeat: always arrays, so one and many read alike.
  isArray: (name) => name === 'serial' || name === 'channel' || name === 'source' || name === 'devices',
});

type Attrs = Record<string, unknown>;

/**
 * The channel sockets of one domain's XML that count: `<serial type='unix'>`
 * (mode serial) or `<channel type='unix'>` (mode vmchannel) with a
 * `<source mode='bind' path='P'/>` where P is a normalised absolute path
 * directly inside `dir`. In document order. Throws on XML that does not parse.
 */
export function channelPaths(xml: string, dir: string, mode: ChannelMode): string[] {
  const doc = parser.parse(xml, true) as { domain?: { devices?: Attrs[] } };
  const tag = mode === 'serial' ? 'serial' : 'channel';
  const out: string[] = [];
  for (const devices of doc.domain?.devices ?? []) {
    const list = (devices as Record<string, unknown>)[tag];
    if (!Array.isArray(list)) continue;
    for (const dev of list as Attrs[]) {
      if (typeof dev !== 'object' || dev === null || dev['@_type'] !== 'unix') continue;
      for (const src of (dev.source as Attrs[] | undefined) ?? []) {
        if (typeof src !== 'object' || src === null || src['@_mode'] !== 'bind') continue;
        const p = src['@_path'];
        if (typeof p === 'string' && insideDir(p, dir)) out.push(p);
      }
    }
  }
  return out;
}

/** Whether `p` is a socket name directly inside `dir` (both absolute; no `..`, `.`, `//` or subfolder). */
export function insideDir(p: string, dir: string): boolean {
  return isAbsolute(p) && posix.normalize(p) === p && posix.dirname(p) === dir && posix.basename(p) !== '';
}

/** `virsh list` (running domains): name → id. */
export function parseRunning(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const r = /^\s*(\d+|-)\s+(\S+)\s+\S/.exec(line);
    if (!r || r[1] === undefined || r[2] === undefined) continue;
    m.set(r[2], r[1]);
  }
  return m;
}

export interface ChannelDiscoveryOptions {
  uri: string;
  /** The virsh binary (default virsh on PATH), as the toolstack has it. */
  command?: string;
  dir: string;
  mode: ChannelMode;
  /** Between full re-lists, ms. */
  rescanMs: number;
  /** One virsh call, ms. */
  commandTimeoutMs: number;
  added: (domain: string, path: string) => void;
  removed: (domain: string) => void;
  log: Logger;
  /** The event process's restart backoff (default 500 ms doubling to 30 s). */
  eventBackoff?: { minMs: number; maxMs: number };
}

interface Known {
  id: string;
  /** The channel reported, or undefined: the domain has none that counts. */
  path: string | undefined;
}

export class ChannelDiscovery {
  private readonly known = new Map<string, Known>();
  private scanning: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private events: ResultPromise | undefined;
  private eventRetry: NodeJS.Timeout | undefined;
  private eventWaitMs: number;
  private readonly backoff: { minMs: number; maxMs: number };
  /** Full scans finished (successful lists), and lifecycle events seen: for status and tests. */
  scans = 0;
  eventsSeen = 0;
  lastError: string | undefined;

  constructor(private readonly o: ChannelDiscoveryOptions) {
    this.backoff = o.eventBackoff ?? { minMs: 500, maxMs: 30_000 };
    this.eventWaitMs = this.backoff.minMs;
  }

  /** Starts the event watch and the periodic re-list; resolves after the first scan (which may have failed: it is retried). */
  async start(): Promise<void> {
    this.watchEvents();
    this.timer = setInterval(() => void this.rescan(), this.o.rescanMs);
    this.timer.unref();
    await this.rescan();
  }

  /** The pid of the running `virsh event` watch, if one runs (status, tests). */
  get watcherPid(): number | undefined {
    return this.events?.pid;
  }

  /** The channels found: domain → socket path. */
  channels(): Map<string, string> {
    const m = new Map<string, string>();
    for (const [d, k] of this.known) if (k.path !== undefined) m.set(d, k.path);
    return m;
  }

  /** One full re-list now; a call while one runs is folded into one more after it. */
  rescan(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.again = false;
          await this.scanOnce();
        } while (this.again && !this.closed);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private virsh(words: string[]) {
    return run([this.o.command ?? 'virsh', '-c', this.o.uri, ...words], this.o.commandTimeoutMs);
  }

  private async scanOnce(): Promise<void> {
    let running: Map<string, string>;
    try {
      const r = await this.virsh(['list']);
      if (r.exitCode !== 0) throw new Error(`virsh list: exit ${r.exitCode}: ${firstLine(r.stderr)}`);
      running = parseRunning(r.stdout);
    } catch (err) {
      // libvirtd away (restarting): keep what is known; the next event or rescan tries again.
      const msg = (err as Error).message;
      if (msg !== this.lastError) this.o.log.warn({ err }, `fence_virt/serial: cannot list libvirt's domains; channels kept as they are: ${msg}`);
      this.lastError = msg;
      return;
    }
    if (this.lastError !== undefined) this.o.log.info('fence_virt/serial: libvirt answers again');
    this.lastError = undefined;
    if (this.closed) return;
    for (const [domain, k] of this.known) {
      if (running.has(domain)) continue;
      this.known.delete(domain);
      if (k.path !== undefined) this.o.removed(domain);
    }
    for (const [domain, id] of running) {
      const had = this.known.get(domain);
      if (had && had.id === id) continue;
      // A name off the pattern is never any node's domain: its XML is not read.
      if (nameProblem(domain)) continue;
      let paths: string[];
      try {
        const r = await this.virsh(['dumpxml', '--domain', domain]);
        // Gone between list and dumpxml: the next scan sees it.
        if (r.exitCode !== 0) continue;
        paths = channelPaths(r.stdout, this.o.dir, this.o.mode);
      } catch (err) {
        this.o.log.warn({ err, domain }, `fence_virt/serial: cannot read ${domain}'s XML: ${(err as Error).message}`);
        continue;
      }
      if (this.closed) return;
      const path = paths[0];
      if (paths.length > 1) this.o.log.warn({ domain, channels: paths }, `fence_virt/serial: ${domain} has ${paths.length} channels in ${this.o.dir}; serving the first, ${path}`);
      this.known.set(domain, { id, path });
      if (had?.path !== undefined && had.path !== path) this.o.removed(domain);
      if (path !== undefined) this.o.added(domain, path);
    }
    this.scans++;
  }

  /** `virsh event --all --loop`: every line is a lifecycle (or other) event; each one triggers a re-list. */
  private watchEvents(): void {
    if (this.closed) return;
    this.eventRetry = undefined;
    const started = performance.now();
    const p = execa(this.o.command ?? 'virsh', ['-c', this.o.uri, 'event', '--all', '--loop'], {
      shell: false,
      reject: false,
      env: { LC_ALL: 'C', LANG: 'C' },
      extendEnv: true,
      stdin: 'ignore',
      buffer: false,
    });
    this.events = p;
    let partial = '';
    p.stdout?.setEncoding('utf8');
    p.stdout?.on('data', (chunk: string) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > 4096) partial = '';
      if (lines.some((l) => l.trim() !== '')) {
        this.eventsSeen++;
        void this.rescan();
      }
    });
    p.stderr?.resume();
    void p.then((r) => {
      if (this.events === p) this.events = undefined;
      if (this.closed) return;
      // A watch that ran a while starts its backoff afresh.
      if (performance.now() - started > 60_000) this.eventWaitMs = this.backoff.minMs;
      const wait = this.eventWaitMs;
      this.eventWaitMs = Math.min(this.backoff.maxMs, this.eventWaitMs * 2);
      this.o.log.warn({ exit: r.exitCode, signal: r.signal }, `fence_virt/serial: libvirt's event watch ended (${r.exitCode !== undefined ? `exit ${r.exitCode}` : (r.signal ?? 'failed')}); restarting it in ${wait} ms`);
      this.eventRetry = setTimeout(() => {
        this.watchEvents();
        // Events may have been missed meanwhile.
        void this.rescan();
      }, wait);
      this.eventRetry.unref();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.eventRetry) clearTimeout(this.eventRetry);
    const p = this.events;
    this.events = undefined;
    if (p) {
      p.kill('SIGTERM');
      await p.catch(() => undefined);
    }
    await this.scanning?.catch(() => undefined);
  }
}
