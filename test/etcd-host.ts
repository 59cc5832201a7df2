// A real etcd cluster for tests (docs/design.md §8): three members from Debian's
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
  /** A crash: SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on its data folder (it rejoins the cluster); resolves once it answers. */
  restart(): Promise<void>;
}

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  /** The member that leads now, if the live ones agree on one. */
  leader(): Promise<EtcdMember | undefined>;
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
  const children: (ResultPromise | undefined)[] = names.map(() => undefined);
  const logs: string[] = names.map(() => '');
  const spawn = (i: number, m: EtcdMember) => {
    const name = names[i] as string;
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
    children[i] = child;
    m.alive = true;
    void child.then(() => {
      if (children[i] === child) m.alive = false;
    });
  };
  const members: EtcdMember[] = names.map((name, i) => {
    const m: EtcdMember = {
      name,
      client: `http://${addr(i)}:2379`,
      alive: false,
      kill: async () => {
        const child = children[i];
        m.alive = false;
        child?.kill('SIGKILL');
        await child;
      },
      restart: async () => {
        if (m.alive) return;
        spawn(i, m);
        let answers = false;
        await until(`etcd ${name} answering again`, () => m.alive && answers, 60_000, async () => {
          if (!m.alive) throw new Error(`etcd ${name} exited: ${(logs[i] ?? '').slice(-2000)}`);
          answers = await health([m.client]);
        });
      },
    };
    spawn(i, m);
    return m;
  });
  const cluster: EtcdCluster = {
    endpoints: members.map((m) => m.client),
    members,
    leader: async () => {
      const live = members.filter((m) => m.alive);
      const r = await execa('etcdctl', ['--endpoints', live.map((m) => m.client).join(','), '--command-timeout=3s', 'endpoint', 'status', '-w', 'json'], { reject: false, env: { ETCDCTL_API: '3' } });
      if (r.exitCode !== 0 && !r.stdout) return undefined;
      const rows = JSON.parse(String(r.stdout) || '[]') as { Endpoint: string; Status: { header: { member_id: number }; leader: number } }[];
      const lead = rows.find((row) => row.Status.header.member_id === row.Status.leader);
      return members.find((m) => m.client === lead?.Endpoint);
    },
    stop: async () => {
      for (const c of children) c?.kill('SIGKILL');
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
