// The peers fence-broker is measured against, each started here with its own
// files in a temp dir and killed at the end: fence_virtd (TCP listener on
// 127.0.0.1, libvirt backend) for fence_virt, and OpenSSH's sshd on loopback
// for fence_virsh. Neither can bind port 0 and report it back, so a free port
// is picked and the start retried when something took it meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { fingerprintOf } from '../common/fingerprint.js';
import { projectPath } from '../common/paths.js';
import { generateEd25519 } from '../broker/identity/keygen.js';
import { libvirtMissing, URI } from '../test/libvirt-host.js';
import { poll } from './lifecycle.js';

export const FENCE_VIRTD = '/usr/sbin/fence_virtd';
export const SSHD = '/usr/sbin/sshd';
const FENCE_VIRT_MODULES = '/usr/lib/x86_64-linux-gnu/fence-virt';

/** Why the benchmark cannot run here (root, a binary, libvirt, the build), or undefined. */
export async function benchMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the benchmark needs root (libvirt qemu:///system, sshd, fence_virtd)';
  for (const bin of [FENCE_VIRTD, '/usr/sbin/fence_virt', '/usr/sbin/fence_virsh', SSHD, 'ssh', 'virsh', 'qemu-system-x86_64']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs it)`;
  }
  if (['tcp.so', 'multicast.so', 'virt.so'].some((m) => !existsSync(join(FENCE_VIRT_MODULES, m)))) return `fence_virtd's tcp/multicast/libvirt modules are not in ${FENCE_VIRT_MODULES}`;
  for (const bin of ['/usr/sbin/fence_xvm', 'ip']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs it)`;
  }
  const lv = await libvirtMissing();
  if (lv) return lv;
  for (const f of [projectPath('plugin', 'dist', 'fence_broker'), projectPath('dist', 'broker', 'main.js'), projectPath('dist', 'bench', 'policy.bench.js')]) {
    if (!existsSync(f)) return `${f} is not built (run scripts/setup.sh)`;
  }
  return undefined;
}

/** A port the kernel just had free on 127.0.0.1 (it may be taken again before use: callers retry). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Peer {
  port: number;
  pid: number;
  /** The last of its log, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** A long-running child with its output kept; `exited` settles when it ends, `waitFor` when its output matches. */
function daemon(cmd: string, args: string[]) {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const watchers = new Set<() => void>();
  const keep = (b: Buffer) => {
    log = (log + b.toString()).slice(-20_000);
    for (const w of watchers) w();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (err) => {
      log += `\ncannot run ${cmd}: ${err.message}`;
      resolve(null);
    });
    child.once('exit', (code) => resolve(code));
  });
  /** 'matched' once the output matches `re`, 'exited' if the process ends first; rejects after `timeoutMs`. */
  const waitFor = (re: RegExp, timeoutMs: number): Promise<'matched' | 'exited'> =>
    new Promise((resolve, reject) => {
      const done = (r: 'matched' | 'exited' | Error) => {
        watchers.delete(check);
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const check = () => {
        if (re.test(log)) done('matched');
      };
      const timer = setTimeout(() => done(new Error(`${cmd}: no output matching ${re} within ${timeoutMs} ms; its log: ${log.slice(-1000)}`)), timeoutMs);
      watchers.add(check);
      void exited.then(() => done('exited'));
      check();
    });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  };
  return { child, exited, waitFor, log: () => log, stop };
}

/** Starts `start(port)` on a free port, up to 5 ports, when the failure looks like the port being taken. */
async function onFreePort<T>(what: string, start: (port: number) => Promise<T | 'port-taken'>): Promise<T> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await start(await freePort());
    if (r !== 'port-taken') return r;
  }
  throw new Error(`${what}: no free port after 5 attempts`);
}

export interface FenceVirtd extends Peer {
  keyFile: string;
}

/**
 * fence_virtd in the foreground (-F) with its own config: tcp listener on 127.0.0.1
 * (a free port), libvirt backend on qemu:///system, and its own pid file (-p):
 * by default it takes /var/run/fence_virtd.pid and exits 1, silently, when a
 * fence_virtd of the host holds that.
 */
export function startFenceVirtd(dir: string, timeoutMs: number): Promise<FenceVirtd> {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'fence_xvm.key');
  writeFileSync(keyFile, randomBytes(512), { mode: 0o600 });
  return onFreePort('fence_virtd', async (port) => {
    const conf = join(dir, 'fence_virt.conf');
    // 0600: fence_virtd changes a readable config to that itself, and says so.
    writeFileSync(
      conf,
      `fence_virtd {\n  listener = "tcp";\n  backend = "libvirt";\n  module_path = "${FENCE_VIRT_MODULES}";\n}\n` +
        `listeners {\n  tcp {\n    key_file = "${keyFile}";\n    address = "127.0.0.1";\n    family = "ipv4";\n    port = "${port}";\n  }\n}\n` +
        `backends {\n  libvirt {\n    uri = "${URI}";\n  }\n}\n`,
      { mode: 0o600 },
    );
    const d = daemon(FENCE_VIRTD, ['-F', '-p', join(dir, 'fence_virtd.pid'), '-f', conf]);
    let exitCode: number | null | undefined;
    void d.exited.then((c) => (exitCode = c));
    // Ready once it answers a real request; nothing else tells (it logs to syslog).
    const answers = async () => {
      if (exitCode !== undefined) return true;
      const r = await execa('fence_virt', ['-T', '127.0.0.1', '-p', String(port), '-k', keyFile, '-t', '5', '-o', 'list'], { reject: false, timeout: 10_000 });
      return r.exitCode === 0;
    };
    try {
      await poll(`fence_virtd to answer on 127.0.0.1:${port}`, answers, timeoutMs);
    } catch (err) {
      await d.stop();
      throw new Error(`${(err as Error).message}; its log: ${d.log().slice(-1000)}`);
    }
    if (exitCode !== undefined) {
      if (/listen socket/i.test(d.log())) return 'port-taken';
      throw new Error(`fence_virtd exited ${exitCode} at start: ${d.log().slice(-1000)}`);
    }
    return { port, pid: d.child.pid as number, keyFile, log: d.log, stop: d.stop };
  });
}

export interface FenceVirtdMulticast extends Peer {
  keyFile: string;
  group: string;
}

/**
 * A second fence_virtd, with the multicast listener fence_xvm talks to: the
 * group 225.0.0.12 on a free port, joined on `bridge` (the guests' bridge),
 * libvirt backend. Ready once fence_xvm in the guest namespace `netns` gets a
 * list from it.
 */
export function startFenceVirtdMulticast(dir: string, bridge: string, netns: string, timeoutMs: number): Promise<FenceVirtdMulticast> {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'fence_xvm.key');
  writeFileSync(keyFile, randomBytes(512), { mode: 0o600 });
  const group = '225.0.0.12';
  return onFreePort('fence_virtd (multicast)', async (port) => {
    const conf = join(dir, 'fence_virt.conf');
    writeFileSync(
      conf,
      `fence_virtd {\n  listener = "multicast";\n  backend = "libvirt";\n  module_path = "${FENCE_VIRT_MODULES}";\n}\n` +
        `listeners {\n  multicast {\n    key_file = "${keyFile}";\n    address = "${group}";\n    family = "ipv4";\n    port = "${port}";\n    interface = "${bridge}";\n  }\n}\n` +
        `backends {\n  libvirt {\n    uri = "${URI}";\n  }\n}\n`,
      { mode: 0o600 },
    );
    const d = daemon(FENCE_VIRTD, ['-F', '-p', join(dir, 'fence_virtd.pid'), '-f', conf]);
    let exitCode: number | null | undefined;
    void d.exited.then((c) => (exitCode = c));
    const answers = async () => {
      if (exitCode !== undefined) return true;
      const r = await execa('ip', ['netns', 'exec', netns, 'fence_xvm', '-a', group, '-p', String(port), '-k', keyFile, '-t', '5', '-o', 'list'], { reject: false, timeout: 10_000 });
      return r.exitCode === 0;
    };
    try {
      await poll(`fence_virtd to answer on ${group}:${port} (${bridge})`, answers, timeoutMs);
    } catch (err) {
      await d.stop();
      throw new Error(`${(err as Error).message}; its log: ${d.log().slice(-1000)}`);
    }
    if (exitCode !== undefined) {
      if (/bind|in use/i.test(d.log())) return 'port-taken';
      throw new Error(`fence_virtd (multicast) exited ${exitCode} at start: ${d.log().slice(-1000)}`);
    }
    return { port, pid: d.child.pid as number, keyFile, group, log: d.log, stop: d.stop };
  });
}

export interface Sshd extends Peer {
  /** The client's private key file (authorized for root). */
  clientKey: string;
  clientKeyText: string;
  knownHosts: string;
  /** SHA256 fingerprint of sshd's host key. */
  fingerprint: string;
  /** fence_virsh's ssh_options: this known_hosts, strict checking, and fence_virsh's own shell prompt (its default, which these options replace). */
  sshOptions: string;
}

/** OpenSSH's sshd in the foreground (-D -e) on 127.0.0.1 with its own config, host key and one authorized root key. */
export function startSshd(dir: string, timeoutMs: number): Promise<Sshd> {
  mkdirSync(dir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true }); // privilege separation directory
  const host = generateEd25519('bench-sshd');
  const client = generateEd25519('bench-client');
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const clientKey = join(dir, 'client_ed25519');
  writeFileSync(hostKey, host.private, { mode: 0o600 });
  writeFileSync(clientKey, client.private, { mode: 0o600 });
  writeFileSync(join(dir, 'authorized_keys'), client.public + '\n', { mode: 0o600 });
  const hostBlob = Buffer.from(host.public.split(' ')[1] as string, 'base64');
  return onFreePort('sshd', async (port) => {
    const conf = join(dir, 'sshd_config');
    writeFileSync(
      conf,
      [
        `ListenAddress 127.0.0.1`,
        `Port ${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // The temp dir lives under /tmp (world-writable, sticky), which StrictModes refuses.
        'StrictModes no',
        // Many clients at once (the front-door peer): do not drop unauthenticated connections early.
        'MaxStartups 200',
        'MaxSessions 100',
        // SHLVL=1: Debian's bash sources ~/.bashrc for a command run over SSH (SSH_CLIENT set, shell level < 2),
        // and root's dotfiles are the machine's, not sshd's: on one machine root's ~/.bashrc ran `pyenv init`,
        // ~0.7 s of CPU per login, which under 50 clients buried sshd and the slices after it. A nested level skips it.
        `SetEnv LIBVIRT_DEFAULT_URI=${URI} SHLVL=1`,
        '',
      ].join('\n'),
    );
    const d = daemon(SSHD, ['-D', '-e', '-f', conf]);
    const outcome = await d.waitFor(new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`), timeoutMs).catch(async (err: Error) => {
      await d.stop();
      throw err;
    });
    if (outcome === 'exited') {
      if (/Address already in use|Cannot bind/i.test(d.log())) return 'port-taken';
      throw new Error(`sshd exited at start: ${d.log().slice(-1000)}`);
    }
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${port} ${host.public}\n`);
    const sshOptions =
      `-F /dev/null -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes ` +
      `-t '/bin/bash -c "PS1=\\\\[EXPECT\\\\]# /bin/bash --noprofile --norc"'`;
    return { port, pid: d.child.pid as number, clientKey, clientKeyText: client.private, knownHosts, fingerprint: fingerprintOf(hostBlob), sshOptions, log: d.log, stop: d.stop };
  });
}
