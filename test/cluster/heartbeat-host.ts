// Real Heartbeat v1 nodes (crm no) for tests (docs/design.md §8), each in its own
// network, PID, mount and UTS namespaces (test/cluster/heartbeat-node.sh) on a
// test bridge (netns.ts). Killing a node's first process takes every process
// of that node with it, as a crash would.
import { execa, type ResultPromise } from 'execa';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { tempDir } from '../helpers.js';
import type { Lab } from './netns.js';

export interface HeartbeatNode {
  name: string;
  dir: string;
  log(): string;
  /** A command inside the node's namespaces. */
  run(argv: string[], timeoutMs?: number): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }>;
  /** SIGKILL to the node's PID 1: every process of the node dies at once. */
  kill(): Promise<void>;
  /** A clean stop (heartbeat -k), then the namespace goes. */
  stop(): Promise<void>;
}

/** Why Heartbeat cannot run here, or undefined. */
export async function heartbeatMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'namespaces and mounts need root';
  if (!existsSync('/usr/libexec/heartbeat/heartbeat')) return 'heartbeat is not installed (scripts/system-setup.sh installs it)';
  if (!existsSync('/usr/lib/stonith/plugins/external')) return 'cluster-glue is not installed';
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface HeartbeatCluster {
  /** Node names (and hostnames), in lab order. */
  names: string[];
  /** The node that owns `resource` at first (haresources). */
  resourceOwner: string;
  /** The stonith_host line every node gets, with `{identity}` standing for its key's path. */
  stonithHost: string;
  /** Node name → its private key file (copied to its /etc/fence-broker/id_ed25519, 0600: where keygen says it goes). */
  keys: Record<string, string>;
  /** The external plugin every node installs: the Node bundle (default) or the sh face, on nodes without Node.js. */
  face?: 'node' | 'sh';
  /** Files for every node's /etc/fence-broker, beside its key (name → text), e.g. the sh face's known_hosts. */
  keyDirFiles?: Record<string, string>;
}

/** Heartbeat's configuration for one node (what docs/tenant/heartbeat.md shows). */
export function haCf(c: HeartbeatCluster, lab: Lab, logDir: string): string {
  return [
    `logfile ${logDir}/ha.log`,
    `debugfile ${logDir}/ha-debug.log`,
    'use_logd no',
    'keepalive 500ms',
    'warntime 2',
    'deadtime 4',
    'initdead 10',
    'udpport 694',
    ...lab.nodes.map((n) => `ucast eth0 ${n.address}`),
    'auto_failback off',
    ...c.names.map((n) => `node ${n}`),
    'crm no',
    c.stonithHost,
    '',
  ].join('\n');
}

/** Starts every node of `c` on `lab`; `resourceLog` receives "start NODE" / "stop NODE" lines of the test resource. */
export async function startHeartbeatCluster(c: HeartbeatCluster, lab: Lab, resourceLog: string): Promise<HeartbeatNode[]> {
  const nodes: HeartbeatNode[] = [];
  try {
    for (const [i, name] of c.names.entries()) {
      const netns = lab.nodes[i]?.netns as string;
      const dir = tempDir('fb-hb-');
      const had = join(dir, 'ha.d');
      mkdirSync(join(had, 'resource.d'), { recursive: true });
      writeFileSync(join(had, 'ha.cf'), haCf(c, lab, dir));
      writeFileSync(join(had, 'authkeys'), 'auth 1\n1 sha1 fence-broker-test\n', { mode: 0o600 });
      writeFileSync(join(had, 'haresources'), `${c.resourceOwner} fbres\n`);
      // A resource as Heartbeat v1 knows them (an LSB-style script); it says where it runs.
      writeFileSync(
        join(had, 'resource.d', 'fbres'),
        ['#!/bin/sh', 'case "$1" in', `  start) echo "start $(uname -n)" >>${resourceLog}; touch /run/fbres ;;`, `  stop) echo "stop $(uname -n)" >>${resourceLog}; rm -f /run/fbres ;;`, '  status) if [ -e /run/fbres ]; then echo running; else echo stopped; fi ;;', 'esac', 'exit 0', ''].join('\n'),
      );
      chmodSync(join(had, 'resource.d', 'fbres'), 0o755);
      // The node's /etc/fence-broker (heartbeat-node.sh lays DIR/etc over /etc): the key where every fencectl command says it goes.
      const keyDir = join(dir, 'etc', 'fence-broker');
      mkdirSync(keyDir, { recursive: true, mode: 0o700 });
      copyFileSync(c.keys[name] as string, join(keyDir, 'id_ed25519'));
      chmodSync(join(keyDir, 'id_ed25519'), 0o600);
      for (const [file, text] of Object.entries(c.keyDirFiles ?? {})) writeFileSync(join(keyDir, file), text, { mode: 0o644 });
      const sh = c.face === 'sh';
      const child: ResultPromise = execa(
        'ip',
        ['netns', 'exec', netns, 'unshare', '--pid', '--mount', '--uts', '--fork', '--propagation', 'private', '--mount-proc', projectPath('test', 'cluster', 'heartbeat-node.sh'), dir, name, sh ? projectPath('plugin', 'external', 'fence-broker.sh') : projectPath('plugin', 'dist', 'fence_broker'), ...(sh ? ['no-node'] : [])],
        { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', buffer: false },
      );
      let out = '';
      child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
      let pid: number | undefined;
      for (let t = 0; t < 600 && pid === undefined; t++) {
        if (/node \S+ up/.test(out)) {
          // ip execs unshare (same PID), whose child is PID 1 of the node's namespace.
          const r = await execa('pgrep', ['-P', String(child.pid)], { reject: false });
          pid = Number(String(r.stdout).trim().split('\n')[0]) || undefined;
        }
        if (pid === undefined) await sleep(100);
      }
      if (pid === undefined) {
        child.kill('SIGKILL');
        throw new Error(`heartbeat node ${name} did not come up: ${out}`);
      }
      const init = pid;
      const gone = async (ms: number) => Promise.race([child.then(() => true), sleep(ms).then(() => false)]);
      nodes.push({
        name,
        dir,
        log: () => (existsSync(join(dir, 'ha.log')) ? readFileSync(join(dir, 'ha.log'), 'utf8') : ''),
        run: async (argv, timeoutMs = 120_000) => {
          const r = await execa('nsenter', ['-t', String(init), '-m', '-u', '-n', '-p', ...argv], { reject: false, timeout: timeoutMs, stdin: 'ignore' });
          return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
        },
        kill: async () => {
          process.kill(init, 'SIGKILL');
          await child;
        },
        stop: async () => {
          try {
            process.kill(init, 'SIGTERM');
          } catch {
            return; // already gone
          }
          if (!(await gone(120_000))) process.kill(init, 'SIGKILL');
          await child;
        },
      });
    }
  } catch (err) {
    for (const n of nodes) await n.kill().catch(() => undefined);
    throw err;
  }
  return nodes;
}
