// A private network for multi-node cluster tests (docs/design.md §8): a bridge in
// the host's namespace with the host at .1 (where the broker listens), and one
// network namespace per node, joined to it by a veth pair, at .11, .12, …
// Nothing leaves the machine: the bridge has no uplink and no route out.
// Bridges are claimed atomically by name (fbbrN, N = the /24 used), so test
// files running at once never share a subnet; the owner's PID is kept in the
// bridge's alias so that leftovers of a test process that died are swept.
import { execa } from 'execa';
import { isAlive as alive } from '../helpers.js';

export interface Lab {
  bridge: string;
  /** The host's address on the bridge. */
  host: string;
  nodes: { netns: string; address: string }[];
  remove(): Promise<void>;
}

const ip = async (...args: string[]) => {
  const r = await execa('ip', args, { reject: false, stdin: 'ignore' });
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
};
const must = async (...args: string[]) => {
  const r = await ip(...args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
};

/** Removes bridges and namespaces left by test processes that no longer run. */
async function sweepStale(): Promise<void> {
  const links = (await ip('-o', 'link', 'show', 'type', 'bridge')).stdout.split('\n');
  for (const line of links) {
    const m = /^\d+: (fbbr(\d+))[:@].*alias fb-pid-(\d+)/.exec(line);
    if (!m || alive(Number(m[3]))) continue;
    for (const ns of (await ip('netns', 'list')).stdout.split('\n').map((l) => l.split(' ')[0] ?? '')) {
      if (ns.startsWith(`fbn${m[2]}-`)) await ip('netns', 'del', ns);
    }
    await ip('link', 'del', m[1] as string);
  }
}

/** `count` node namespaces on a fresh bridge. */
export async function makeLab(count: number): Promise<Lab> {
  await sweepStale();
  let n = 0;
  for (let i = 0; i < 200 && n === 0; i++) {
    const candidate = 20 + ((process.pid + i) % 200);
    if ((await ip('link', 'add', `fbbr${candidate}`, 'type', 'bridge')).ok) n = candidate;
  }
  if (n === 0) throw new Error('no free test bridge name (fbbr20…fbbr219)');
  const bridge = `fbbr${n}`;
  const nodes: Lab['nodes'] = [];
  const lab: Lab = {
    bridge,
    host: `10.213.${n}.1`,
    nodes,
    remove: async () => {
      for (const node of nodes) await ip('netns', 'del', node.netns);
      await ip('link', 'del', bridge);
    },
  };
  try {
    await must('link', 'set', bridge, 'alias', `fb-pid-${process.pid}`);
    await must('addr', 'add', `${lab.host}/24`, 'dev', bridge);
    await must('link', 'set', bridge, 'up');
    for (let i = 1; i <= count; i++) {
      const netns = `fbn${n}-${i}`;
      const address = `10.213.${n}.${10 + i}`;
      await must('netns', 'add', netns);
      nodes.push({ netns, address });
      // A namespace deleted while a leaked process (a killed run's corosync) still lived in it keeps its veth
      // pair; the bridge number is ours now, so such a link is stale.
      await ip('link', 'del', `fbv${n}-${i}`);
      await must('link', 'add', `fbv${n}-${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns);
      await must('link', 'set', `fbv${n}-${i}`, 'master', bridge, 'up');
      await must('-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      await must('-n', netns, 'link', 'set', 'eth0', 'up');
      await must('-n', netns, 'link', 'set', 'lo', 'up');
    }
  } catch (err) {
    await lab.remove();
    throw err;
  }
  return lab;
}

/** Why namespaces and bridges cannot be made here, or undefined. */
export async function labMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const r = await execa('ip', ['-V'], { reject: false });
  return r.exitCode === 0 ? undefined : 'iproute2 (ip) is not installed';
}
