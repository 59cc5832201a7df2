// Runs the real daemon (dist/broker/main.js) on loopback port 0 (the port it
// got is read from its ready line: no guessed port can be taken meanwhile) with
// a generated tenancy and keys, and the real OpenSSH client against it.
import { execa, type ResultPromise } from 'execa';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { projectPath } from '../common/paths.js';
import { tempDir } from './helpers.js';
import { fingerprintOf } from '../common/fingerprint.js';
import { generateEd25519 } from '../broker/identity/keygen.js';

export interface Daemon {
  dir: string;
  port: number;
  pid: number;
  config: string;
  /** Private key file of a node or admin by name. */
  key(name: string): string;
  knownHosts: string;
  /** The broker's host key fingerprint, SHA256:..., for the plugin to pin. */
  fingerprint: string;
  ssh(keyName: string, command: string | undefined, extra?: string[]): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }>;
  /** The request outcome lines of the audit log (event "request"). */
  audit(): Record<string, unknown>[];
  /** Every audit line: start, intent, request, refusal, stop. */
  auditAll(): Record<string, unknown>[];
  sim(): Record<string, string>;
  /** Resolves when the daemon's log (stderr), from now on, has a line matching `re`. */
  waitLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Rewrites clusters.yaml, sends SIGHUP and waits for the daemon to say how the reload went. */
  reload(edit: (yaml: string) => string): Promise<Record<string, unknown>>;
  /** Resident set size of the daemon, KiB (from /proc). */
  rssKiB(): number;
  /** Peak resident set size since start or the last resetPeakRss(), KiB (VmHWM). */
  peakRssKiB(): number;
  /** Starts a new peak: the kernel sets VmHWM to the current RSS (clear_refs 5). */
  resetPeakRss(): void;
  /** The last `chars` of the daemon's log (stderr), for a failure message. */
  logTail(chars?: number): string;
  stop(): Promise<void>;
  /** A crash: SIGKILL, and wait until the process is gone. */
  kill9(): Promise<void>;
  /** Starts the daemon again on the same folder (config, host key, audit log, sim state), as systemd's Restart= would. */
  restart(): Promise<Daemon>;
  process: ResultPromise;
}

/** `clusters`: cluster → { domains, nodes: node → domain }; `toolstack` YAML (default: a sim in the temp dir). */
export async function startDaemon(opts: {
  clusters: Record<string, { domains: string[]; nodes: Record<string, string>; extra?: string[] }>;
  admins?: string[];
  toolstack?: string;
  /** Where the audit log goes (default: audit.jsonl in the temp dir). */
  auditLog?: string;
  /** Environment of the daemon (added to this process's). */
  env?: Record<string, string>;
  simDomains?: Record<string, string>;
  extraBroker?: string[];
  /** Node or admin name → an existing private key file to use instead of a new key. */
  reuseKeys?: Record<string, string>;
  /** The address to listen on (default 127.0.0.1); the port is always 0, chosen by the kernel. */
  listenHost?: string;
  /** More arguments of fence-broker (say, --log-format text). */
  args?: string[];
}): Promise<Daemon> {
  const dir = tempDir('fb-daemon-');
  const keyFile = (name: string) => join(dir, `key-${name}`);
  const pub = (name: string) => {
    const reuse = opts.reuseKeys?.[name];
    if (reuse) {
      const text = readFileSync(reuse);
      writeFileSync(keyFile(name), text, { mode: 0o600 });
      const parsed = ssh2.utils.parseKey(text);
      if (parsed instanceof Error || Array.isArray(parsed)) throw new Error(`cannot reuse key ${reuse}`);
      return `${parsed.type} ${parsed.getPublicSSH().toString('base64')} ${name}`;
    }
    const pair = generateEd25519(name);
    writeFileSync(keyFile(name), pair.private, { mode: 0o600 });
    return pair.public;
  };
  const lines = [
    'broker:',
    `  listen: ${opts.listenHost ?? '127.0.0.1'}:0`,
    '  host_key: host_ed25519',
    `  toolstack: ${opts.toolstack ?? '{ type: sim, state: sim.json }'}`,
    `  audit_log: ${opts.auditLog ?? 'audit.jsonl'}`,
    ...(opts.extraBroker ?? []),
    'clusters:',
  ];
  for (const [c, spec] of Object.entries(opts.clusters)) {
    lines.push(`  ${c}:`, `    domains: [${spec.domains.join(', ')}]`, '    nodes:');
    for (const [n, d] of Object.entries(spec.nodes)) lines.push(`      ${n}: { key: "${pub(n)}", domain: ${d} }`);
    lines.push(...(spec.extra ?? []).map((l) => `    ${l}`));
  }
  if (opts.admins?.length) {
    lines.push('admins:');
    for (const a of opts.admins) lines.push(`  ${a}: { key: "${pub(a)}" }`);
  }
  writeFileSync(join(dir, 'clusters.yaml'), lines.join('\n') + '\n');
  if (opts.simDomains) writeFileSync(join(dir, 'sim.json'), JSON.stringify({ domains: opts.simDomains }));

  return launch(dir, opts);
}

async function launch(dir: string, opts: { auditLog?: string; env?: Record<string, string>; args?: string[] }): Promise<Daemon> {
  const keyFile = (name: string) => join(dir, `key-${name}`);
  const config = join(dir, 'clusters.yaml');
  const child = execa('node', [projectPath('dist', 'broker', 'main.js'), '--config', config, ...(opts.args ?? [])], { reject: false, buffer: false, stderr: 'pipe', ...(opts.env ? { env: opts.env } : {}) });
  let log = '';
  const watchers = new Set<{ from: number; re: RegExp; hit: (line: string) => void }>();
  const scan = () => {
    for (const w of watchers) {
      const lines = log.slice(w.from).split('\n');
      lines.pop(); // complete lines only
      const line = lines.find((l) => w.re.test(l));
      if (line !== undefined) {
        watchers.delete(w);
        w.hit(line);
      }
    }
  };
  child.stderr?.on('data', (b: Buffer) => {
    log += b.toString();
    scan();
  });
  const waitLog = (re: RegExp, timeoutMs = 60_000, from = log.length): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        watchers.delete(w);
        reject(new Error(`no log line matching ${re} within ${timeoutMs} ms: ${log.slice(from)}`));
      }, timeoutMs);
      const w = {
        from,
        re,
        hit: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      watchers.add(w);
      scan();
    });
  const ready = await Promise.race([
    waitLog(/fence-broker ready/, 60_000, 0),
    child.then((r) => Promise.reject(new Error(`daemon exited ${r.exitCode}: ${log}`))),
  ]);
  const port = Number(/"listen":"[^"]*:(\d+)"/.exec(ready)?.[1]);
  if (!(port > 0)) throw new Error(`no port in the ready line: ${ready}`);
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${readFileSync(join(dir, 'host_ed25519.pub'), 'utf8')}`);
  chmodSync(knownHosts, 0o644);
  const hostPub = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim().split(/\s+/)[1] ?? '';
  const auditAll = () =>
    readFileSync(opts.auditLog ?? join(dir, 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    dir,
    port,
    pid: child.pid as number,
    config,
    key: keyFile,
    knownHosts,
    fingerprint: fingerprintOf(Buffer.from(hostPub, 'base64')),
    process: child,
    ssh: async (keyName, command, extra = []) => {
      const r = await execa(
        'ssh',
        [
          '-p', String(port), '-i', keyFile(keyName),
          '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
          '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-F', '/dev/null',
          ...extra, 'fence@127.0.0.1', ...(command === undefined ? [] : [command]),
        ],
        { reject: false, timeout: 60_000, stdin: 'ignore' },
      );
      return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
    audit: () => auditAll().filter((l) => l.event === 'request'),
    auditAll,
    sim: () => (JSON.parse(readFileSync(join(dir, 'sim.json'), 'utf8')) as { domains: Record<string, string> }).domains,
    waitLog: (re, timeoutMs) => waitLog(re, timeoutMs),
    reload: async (edit) => {
      writeFileSync(config, edit(readFileSync(config, 'utf8')));
      const outcome = waitLog(/"msg":"(reloaded|reload failed[^"]*)"/);
      child.kill('SIGHUP');
      return JSON.parse(await outcome) as Record<string, unknown>;
    },
    rssKiB: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]),
    peakRssKiB: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]),
    resetPeakRss: () => writeFileSync(`/proc/${child.pid}/clear_refs`, '5'),
    logTail: (chars = 4000) => log.slice(-chars),
    stop: async () => {
      child.kill('SIGTERM');
      const r = await child;
      // The daemon must stop by itself on SIGTERM: nothing (a timer, a socket, the log) may hold it.
      if (r.isForcefullyTerminated || r.exitCode !== 0) throw new Error(`daemon did not stop cleanly on SIGTERM (exit ${r.exitCode}, signal ${r.signal}, forced ${r.isForcefullyTerminated}, ${r.durationMs} ms): ${log.slice(-2000)}`);
    },
    kill9: async () => {
      child.kill('SIGKILL');
      await child;
    },
    restart: () => launch(dir, opts),
  };
}
