// Runs the real daemon (dist/broker/main.js) on a free loopback port with a
// generated tenancy and keys, and the real OpenSSH client against it.
import { execa, type ResultPromise } from 'execa';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { projectPath } from '../common/paths.js';
import { tempDir } from './helpers.js';
import { fingerprintOf } from '../common/fingerprint.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Daemon {
  dir: string;
  port: number;
  /** Private key file of a node or admin by name. */
  key(name: string): string;
  knownHosts: string;
  /** The broker's host key fingerprint, SHA256:..., for the plugin to pin. */
  fingerprint: string;
  ssh(keyName: string, command: string | undefined, extra?: string[]): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }>;
  audit(): Record<string, unknown>[];
  sim(): Record<string, string>;
  stop(): Promise<void>;
  process: ResultPromise;
}

/** `clusters`: cluster → { domains, nodes: node → domain }; `toolstack` YAML (default: a sim in the temp dir). */
export async function startDaemon(opts: {
  clusters: Record<string, { domains: string[]; nodes: Record<string, string>; extra?: string[] }>;
  admins?: string[];
  toolstack?: string;
  simDomains?: Record<string, string>;
  extraBroker?: string[];
  /** Node or admin name → an existing private key file to use instead of a new key. */
  reuseKeys?: Record<string, string>;
}): Promise<Daemon> {
  const dir = tempDir('fb-daemon-');
  const port = await freePort();
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
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: name });
    writeFileSync(keyFile(name), pair.private, { mode: 0o600 });
    return pair.public;
  };
  const lines = [
    'broker:',
    `  listen: 127.0.0.1:${port}`,
    '  host_key: host_ed25519',
    `  toolstack: ${opts.toolstack ?? '{ type: sim, state: sim.json }'}`,
    '  audit_log: audit.jsonl',
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

  const child = execa('node', [projectPath('dist', 'broker', 'main.js'), '--config', join(dir, 'clusters.yaml')], { reject: false, buffer: false, stderr: 'pipe' });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start: ${log}`)), 20_000);
    child.stderr?.on('data', (b: Buffer) => {
      log += b.toString();
      if (log.includes('fence-broker ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void child.then((r) => reject(new Error(`daemon exited ${r.exitCode}: ${log}`)));
  });
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${readFileSync(join(dir, 'host_ed25519.pub'), 'utf8')}`);
  chmodSync(knownHosts, 0o644);
  const hostPub = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim().split(/\s+/)[1] ?? '';
  return {
    dir,
    port,
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
    audit: () =>
      readFileSync(join(dir, 'audit.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    sim: () => (JSON.parse(readFileSync(join(dir, 'sim.json'), 'utf8')) as { domains: Record<string, string> }).domains,
    stop: async () => {
      child.kill('SIGTERM');
      await child;
    },
  };
}
