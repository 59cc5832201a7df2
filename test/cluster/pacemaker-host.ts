// A real Pacemaker + corosync node for tests (docs/design.md §8), in its own mount
// and UTS namespaces (test/cluster/pacemaker-node.sh): its state, its hostname
// and the fence agents it sees are its own, so it can run beside everything
// else and vanishes with its processes. Pacemaker's tools run inside it
// through nsenter.
import { execa, type ResultPromise } from 'execa';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { tempDir } from '../helpers.js';

export interface PacemakerNode {
  name: string;
  dir: string;
  /** A command inside the node's namespaces. */
  run(argv: string[], timeoutMs?: number): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }>;
  /** Resolves when `check` (given `crm_mon --output-as=xml`) holds; fails after a generous bound. */
  waitFor(what: string, check: (crmMon: string) => boolean, timeoutMs?: number): Promise<string>;
  log(): string;
  /** SIGKILL to every process of the node at once, as a crash would. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** Why a Pacemaker node cannot run here, or undefined. */
export async function pacemakerMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'namespaces and mounts need root';
  for (const bin of ['corosync', 'pacemakerd', 'stonith_admin', 'cibadmin', 'crm_mon', 'unshare', 'nsenter']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs pacemaker and corosync)`;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface NodeOptions {
  /** corosync.conf's text (default: a one-node cluster of `name` on 127.0.0.1). */
  corosyncConf?: string;
  /** Run in this network namespace (netns.ts) instead of the host's network. */
  netns?: string;
  /** A private key the node sees at IDENTITY_PATH (a copy, 0600, in its own /run). */
  identity?: string;
}

/** Where a node started with `identity` finds its key. */
export const IDENTITY_PATH = '/run/fence_broker/identity';

/** corosync.conf for `nodes` (name → ring0 address); two nodes keep quorum alone (two_node). */
export function corosyncConf(nodes: Record<string, string>): string {
  const list = Object.entries(nodes).flatMap(([name, addr], i) => ['  node {', `    ring0_addr: ${addr}`, `    name: ${name}`, `    nodeid: ${i + 1}`, '  }']);
  return [
    'totem {', '  version: 2', `  cluster_name: fbtest${process.pid}`, '  transport: knet', '  crypto_cipher: none', '  crypto_hash: none', '}',
    'nodelist {', ...list, '}',
    'quorum {', '  provider: corosync_votequorum', ...(Object.keys(nodes).length === 2 ? ['  two_node: 1'] : []), '}',
    'logging {', '  to_stderr: yes', '  to_syslog: no', '}', '',
  ].join('\n');
}

export async function startPacemakerNode(name = 'node1', o: NodeOptions = {}): Promise<PacemakerNode> {
  const dir = tempDir('fb-pcmk-');
  writeFileSync(join(dir, 'corosync.conf'), o.corosyncConf ?? corosyncConf({ [name]: '127.0.0.1' }));
  const script = ['unshare', '--mount', '--uts', '--fork', '--propagation', 'private', projectPath('test', 'cluster', 'pacemaker-node.sh'), dir, name, projectPath('plugin', 'dist', 'fence_broker'), o.identity ?? ''];
  const [file, ...args] = (o.netns ? ['ip', 'netns', 'exec', o.netns, ...script] : script) as [string, ...string[]];
  const child: ResultPromise = execa(file, args, {
    reject: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
    // Its own process group: if it will not stop, the whole node goes with one kill.
    detached: true,
  });
  let out = '';
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  // The script's own PID (unshare's child): where nsenter goes.
  let pid: number | undefined;
  for (let i = 0; i < 600 && pid === undefined; i++) {
    const m = /node \S+ up: corosync \d+ pacemakerd \d+/.exec(out);
    if (m) {
      const r = await execa('pgrep', ['-P', String(child.pid)], { reject: false });
      pid = Number(String(r.stdout).trim().split('\n')[0]) || undefined;
    }
    if (pid === undefined) await sleep(100);
  }
  const killAll = () => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // already gone
    }
  };
  if (pid === undefined) {
    killAll();
    throw new Error(`pacemaker node did not come up: ${out}`);
  }
  const target = pid;
  const run: PacemakerNode['run'] = async (argv, timeoutMs = 180_000) => {
    const r = await execa('nsenter', ['-t', String(target), '-m', '-u', '-n', ...argv], { reject: false, timeout: timeoutMs, stdin: 'ignore' });
    return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const node: PacemakerNode = {
    name,
    dir,
    run,
    waitFor: async (what, check, timeoutMs = 240_000) => {
      const deadline = performance.now() + timeoutMs;
      let last = '';
      while (performance.now() < deadline) {
        last = (await run(['crm_mon', '-1', '--output-as=xml'], 60_000)).stdout;
        if (check(last)) return last;
        await sleep(500);
      }
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last crm_mon:\n${last}\nlog tail:\n${node.log().slice(-3000)}`);
    },
    log: () => (existsSync(join(dir, 'pacemaker.log')) ? readFileSync(join(dir, 'pacemaker.log'), 'utf8') : ''),
    kill: async () => {
      killAll();
      await child;
    },
    stop: async () => {
      try {
        process.kill(target, 'SIGTERM');
      } catch {
        return; // already gone (killed)
      }
      const stopped = await Promise.race([child.then(() => true), sleep(120_000).then(() => false)]);
      if (!stopped) killAll();
      await child;
      // Anything of the node's group still about (a daemon that outlived pacemakerd) goes too.
      killAll();
    },
  };
  try {
    await node.waitFor(`${name} online, with a DC`, (x) => new RegExp(`<node name="${name}"[^>]* online="true"`).test(x) && /<current_dc present="true"/.test(x));
  } catch (err) {
    await node.stop();
    throw err;
  }
  return node;
}
