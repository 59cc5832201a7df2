// A real guest for the serial channel tests (issue 20): a libvirt domain
// booting test/guest/image.ts's Debian kernel and busybox initramfs directly
// (no disk, no <interface>: the guest has no network device at all), KVM where
// /dev/kvm works and TCG where it does not. Serial 0 is the control console
// (a unix socket in a private folder) this module drives with `run`; serial 1
// is the fence channel, a unix socket at <channels dir>/<domain>.sock, which
// the guest sees as /dev/ttyS1. Domains are named fbt-<pid>-… so that
// test/libvirt-host.ts's sweepStale removes those of dead test processes.
import { accessSync, constants, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { domainName, domstate, removeDomain, sweepStale, virsh } from '../libvirt-host.js';
import { tempDir } from '../helpers.js';
import type { GuestImage } from './image.js';

/** 'kvm' when /dev/kvm can be opened and libvirt offers it, else 'qemu' (TCG). */
export async function virtType(): Promise<'kvm' | 'qemu'> {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'qemu';
  }
  const r = await virsh('domcapabilities', '--virttype', 'kvm');
  return r.exitCode === 0 ? 'kvm' : 'qemu';
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');

export function guestXml(o: { name: string; type: 'kvm' | 'qemu'; image: GuestImage; console: string; channel: string; memoryMiB?: number }): string {
  return `<domain type='${o.type}'>
  <name>${esc(o.name)}</name>
  <memory unit='MiB'>${o.memoryMiB ?? 192}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${esc(o.image.kernel)}</kernel>
    <initrd>${esc(o.image.initrd)}</initrd>
    <cmdline>console=ttyS0 loglevel=3 panic=-1 mitigations=off</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='unix'><source mode='bind' path='${esc(o.console)}'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='${esc(o.channel)}'/><target port='1'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;
}

export interface RunResult {
  out: string;
  rc: number;
}

export interface GuestOptions {
  /** Part of the domain name (fbt-<pid>-<tag>-<n>). */
  tag: string;
  image: GuestImage;
  /** The channels dir: serial 1 binds <channelsDir>/<domain>.sock. */
  channelsDir: string;
  memoryMiB?: number;
  /** Called with the domain name before it is defined (for cleanup). */
  track?: (name: string) => void;
}

let seq = 0;
/** How long a command's start marker may take before the shell is nudged with an empty line. */
const NUDGE_MS = 3_000;

export class Guest {
  readonly name: string;
  readonly channel: string;
  readonly console: string;
  private readonly xml: string;
  private sock: Socket | undefined;
  private buf = '';
  private readonly waiters = new Set<() => void>();
  /** Console output seen so far (the last 64 KiB), for failure messages. */
  private log = '';
  private closed = false;
  /** Empty lines written because a command's start marker had not come (a stalled shell). */
  resent = 0;
  /** Wall time of the last start() up to a shell answering, ms. */
  bootMs = 0;

  private constructor(name: string, channel: string, consolePath: string, xml: string) {
    this.name = name;
    this.channel = channel;
    this.console = consolePath;
    this.xml = xml;
  }

  /** Defines the domain (not started). */
  static async define(o: GuestOptions): Promise<Guest> {
    const name = domainName(o.tag);
    o.track?.(name);
    const priv = tempDir('fb-guest-');
    const consolePath = join(priv, 'console.sock');
    mkdirSync(o.channelsDir, { recursive: true });
    const channel = join(o.channelsDir, `${name}.sock`);
    const xml = guestXml({ name, type: await virtType(), image: o.image, console: consolePath, channel, memoryMiB: o.memoryMiB });
    const file = join(priv, `${name}.xml`);
    writeFileSync(file, xml);
    const r = await virsh('define', file);
    if (r.exitCode !== 0) throw new Error(`virsh define ${name}: ${r.stderr}`);
    return new Guest(name, channel, consolePath, xml);
  }

  /** Defines and starts a guest, and waits for its shell. */
  static async boot(o: GuestOptions, timeoutMs = 240_000): Promise<Guest> {
    const g = await Guest.define(o);
    await g.start(timeoutMs);
    return g;
  }

  /** Starts the domain and waits until its shell answers on the console (bounded). */
  async start(timeoutMs = 240_000): Promise<void> {
    const t0 = performance.now();
    this.disconnect();
    const s = await virsh('start', this.name);
    if (s.exitCode !== 0) throw new Error(`virsh start ${this.name}: ${s.stderr}`);
    await this.connectConsole(timeoutMs);
    // The shell is up once it runs a command: init's READY line may come
    // before we are connected (output then goes nowhere), so ask.
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`guest ${this.name}: no shell after ${timeoutMs} ms (${await domstate(this.name)}); console: ${this.tail()}`);
      try {
        await this.run('true', Math.min(left, 5_000));
        break;
      } catch {
        /* not up yet: ask again */
      }
    }
    this.bootMs = performance.now() - t0;
  }

  private async connectConsole(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let lastErr: unknown;
    while (performance.now() < deadline) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const c = connect({ path: this.console });
          c.once('connect', () => resolve(c));
          c.once('error', reject);
        });
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          this.buf += d;
          this.log = (this.log + d).slice(-65_536);
          if (this.buf.length > 1_048_576) this.buf = this.buf.slice(-524_288);
          for (const w of [...this.waiters]) w();
        });
        sock.on('error', () => undefined);
        sock.on('close', () => {
          if (this.sock === sock) this.sock = undefined;
          for (const w of [...this.waiters]) w();
        });
        this.sock = sock;
        return;
      } catch (err) {
        lastErr = err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`guest ${this.name}: cannot connect to its console ${this.console}`, { cause: lastErr });
  }

  private disconnect(): void {
    this.sock?.destroy();
    this.sock = undefined;
    this.buf = '';
  }

  /** The last of the console output, for failure messages. */
  tail(n = 2000): string {
    return JSON.stringify(this.log.slice(-n));
  }

  /**
   * Runs `cmd` in the guest's shell (stdin /dev/null, stderr into out) and
   * returns its output and exit code. The output is framed by markers that
   * carry a fresh id, so a late answer to an earlier call never matches.
   */
  async run(cmd: string, timeoutMs = 60_000): Promise<RunResult> {
    if (this.closed) throw new Error(`guest ${this.name} is destroyed`);
    const sock = this.sock;
    if (!sock) throw new Error(`guest ${this.name}: console not connected`);
    const id = `${process.pid}x${++seq}`;
    // The markers are printed by printf from split words: the command line
    // itself never contains them, should the console echo it.
    const line = `printf '%s_%s\\n' __FBS ${id}; { ${cmd}\n} </dev/null 2>&1; printf '%s_%s_%s\\n' __FBE ${id} $?\n`;
    const started = `__FBS_${id}`;
    const re = new RegExp(`__FBS_${id}\\r?\\n([\\s\\S]*?)__FBE_${id}_(\\d+)\\r?\\n`);
    return new Promise<RunResult>((resolve, reject) => {
      const done = (r: RunResult | Error) => {
        this.waiters.delete(check);
        clearTimeout(timer);
        clearInterval(resend);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const check = () => {
        const m = re.exec(this.buf);
        if (m) {
          this.buf = this.buf.slice((m.index ?? 0) + m[0].length);
          done({ out: (m[1] as string).replace(/\r/g, ''), rc: Number(m[2]) });
        } else if (this.sock !== sock) done(new Error(`guest ${this.name}: console closed while running ${JSON.stringify(cmd)}; console: ${this.tail()}`));
      };
      const timer = setTimeout(() => done(new Error(`guest ${this.name}: ${JSON.stringify(cmd)} gave no answer within ${timeoutMs} ms; console: ${this.tail()}`)), timeoutMs);
      // Under TCG the guest's shell now and then holds a line that arrived
      // whole until more input comes: until the start marker shows, an empty
      // line is written (harmless to sh). The command itself is never written
      // twice, so it never runs twice.
      const resend = setInterval(() => {
        if (this.buf.includes(started) || this.log.includes(started)) clearInterval(resend);
        else {
          this.resent++;
          sock.write('\n');
        }
      }, NUDGE_MS);
      this.waiters.add(check);
      sock.write(line);
      check();
    });
  }

  /** Hard power-off (virsh destroy), as a fence does; the definition stays. */
  async stop(): Promise<void> {
    this.disconnect();
    await virsh('destroy', this.name);
  }

  /** Destroys and undefines the domain and removes its sockets. */
  async destroy(): Promise<void> {
    this.closed = true;
    this.disconnect();
    await removeDomain(this.name);
    rmSync(this.channel, { force: true });
    rmSync(this.console, { force: true });
  }
}

/** Removes guests (and plain test domains) left by test processes that no longer run. */
export const sweepStaleGuests = sweepStale;
