// A real etcd cluster for tests (DESIGN.md §8): three members from Debian's
// etcd-server on loopback. etcd needs its peer addresses before it starts, so
// each cluster takes three addresses of its own in 127.0.0.0/8 (the standard
// ports on each) instead of guessing free ports; an address in use only means
// trying other ones.
import { execa, type ResultPromise } from 'execa';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { tempDir, until } from './helpers.js';

export interface EtcdMember {
  name: string;
  client: string;
  alive: boolean;
  kill(): Promise<void>;
}

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  stop(): Promise<void>;
}

/** Why etcd cannot run here, or undefined. */
export async function etcdMissing(): Promise<string | undefined> {
  for (const bin of ['etcd', 'etcdctl']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs etcd-server and etcd-client)`;
  }
  return undefined;
}

const health = async (endpoints: string[]) => {
  const r = await execa('etcdctl', ['--endpoints', endpoints.join(','), '--command-timeout=5s', 'endpoint', 'health'], { reject: false, env: { ETCDCTL_API: '3' } });
  return r.exitCode === 0;
};

async function tryStart(): Promise<EtcdCluster | undefined> {
  const net = `127.${randomInt(1, 250)}.${randomInt(1, 250)}`;
  const names = ['m1', 'm2', 'm3'];
  const addr = (i: number) => `${net}.${i + 1}`;
  const initial = names.map((n, i) => `${n}=http://${addr(i)}:2380`).join(',');
  const dir = tempDir('fb-etcd-');
  const children: ResultPromise[] = [];
  const logs: string[] = names.map(() => '');
  const members: EtcdMember[] = names.map((name, i) => {
    const child = execa(
      'etcd',
      [
        '--name', name, '--data-dir', join(dir, name),
        '--listen-client-urls', `http://${addr(i)}:2379`, '--advertise-client-urls', `http://${addr(i)}:2379`,
        '--listen-peer-urls', `http://${addr(i)}:2380`, '--initial-advertise-peer-urls', `http://${addr(i)}:2380`,
        '--initial-cluster', initial, '--initial-cluster-token', `fb-${process.pid}-${net}`, '--initial-cluster-state', 'new',
        '--log-level', 'warn',
      ],
      { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', buffer: false },
    );
    child.stderr?.on('data', (b: Buffer) => (logs[i] = ((logs[i] ?? '') + b.toString()).slice(-20_000)));
    children.push(child);
    const m: EtcdMember = {
      name,
      client: `http://${addr(i)}:2379`,
      alive: true,
      kill: async () => {
        m.alive = false;
        child.kill('SIGKILL');
        await child;
      },
    };
    void child.then(() => (m.alive = false));
    return m;
  });
  const cluster: EtcdCluster = {
    endpoints: members.map((m) => m.client),
    members,
    stop: async () => {
      for (const c of children) c.kill('SIGKILL');
      await Promise.all(children);
    },
  };
  let healthy = false;
  try {
    await until('etcd cluster healthy', () => members.every((m) => m.alive) && healthy, 60_000, async () => {
      if (members.some((m) => !m.alive)) throw new Error('member exited');
      healthy = await health(cluster.endpoints);
    });
    return cluster;
  } catch (err) {
    await cluster.stop();
    if (logs.some((l) => /address already in use/.test(l))) return undefined;
    throw new Error(`etcd did not start: ${(err as Error).message}\n${logs.join('\n---\n').slice(-4000)}`);
  }
}
/** Three members, healthy, on loopback. */
export async function startEtcd(): Promise<EtcdCluster> {
  for (let i = 0; i < 5; i++) {
    const c = await tryStart();
    if (c) return c;
  }
  throw new Error('etcd: no free loopback addresses after 5 tries');
}
