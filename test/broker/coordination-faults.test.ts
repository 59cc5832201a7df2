// The fence race and the storm limit with etcd when etcd is slow (issue 18):
// real brokers, a real 3-member etcd, and a fault-injecting TCP proxy
// (test/etcd-proxy.ts) between a broker and each member. One test per way
// the review broke it: a late answer, a late commit after the reply, a
// destroy that outlives its deadline, a storm of simultaneous fences.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Reason } from '../../broker/policy/engine.js';
import { cleanup } from '../helpers.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { etcdMissing, startEtcd, type EtcdCluster } from '../etcd-host.js';
import { startEtcdProxy } from '../etcd-proxy.js';
import { makeDouble } from '../doubles.js';
import { request } from '../ssh-client.js';

const missing = await etcdMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs etcd: ${missing}`);
if (missing) console.error(`coordination fault tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let etcd: EtcdCluster;
anyTest.before(async () => {
  if (!missing) etcd = await startEtcd();
});
anyTest.after.always(async () => {
  await etcd?.stop();
});

const coordination = (endpoints: string[], prefix: string, timeoutS = 2) => ['  coordination:', '    type: etcd', `    endpoints: [${endpoints.join(', ')}]`, `    prefix: ${prefix}`, `    timeout: ${timeoutS}`];

/** The keys etcd holds under `prefix` + `path` (any layout: one mark key, or one per claim under it). */
async function keys(prefix: string, path: string): Promise<string[]> {
  const r = await execa('etcdctl', ['--endpoints', etcd.endpoints.join(','), 'get', '--prefix', '--keys-only', `${prefix}/${path}`], { env: { ETCDCTL_API: '3' } });
  return String(r.stdout).split('\n').filter((l) => l.trim() !== '');
}

const codes = (reply: { code?: unknown; message?: unknown }) => `${String(reply.code)} ${String(reply.message)}`;
const stopAll = (...all: { stop?(): Promise<void>; close?(): Promise<void> }[]) => cleanup(...all.map((x) => () => (x.stop ? x.stop() : (x.close as () => Promise<void>)())));

/** Host A (reaching etcd through proxies) runs `onA`; host B (straight to etcd) runs `onB`; both share tenancy and keys. */
async function twoHosts(clusters: Parameters<typeof startDaemon>[0]['clusters'], prefix: string, onA: string[], onB: string[], extra: string[] = []) {
  const proxies = await Promise.all(etcd.endpoints.map((e) => startEtcdProxy(e)));
  const a = await startDaemon({ clusters, simDomains: Object.fromEntries(onA.map((d) => [d, 'running'])), extraBroker: ['  host_id: host-a', ...extra, ...coordination(proxies.map((p) => p.endpoint), prefix)] });
  const names = Object.values(clusters).flatMap((c) => Object.keys(c.nodes));
  const b = await startDaemon({
    clusters,
    simDomains: Object.fromEntries(onB.map((d) => [d, 'running'])),
    extraBroker: ['  host_id: host-b', ...extra, ...coordination(etcd.endpoints, prefix)],
    reuseKeys: Object.fromEntries(names.map((n) => [n, a.key(n)])),
  });
  return { a, b, proxies };
}

test('a late answer: the claim at the broker without the domain is applied but answered after its bound; no mark is deleted, the loser never fences the winner', async (t) => {
  const prefix = `/fb-late-answer-${process.pid}`;
  const { a, b, proxies } = await twoHosts({ l: { domains: ['l-a', 'l-b'], nodes: { 'l-a': 'l-a', 'l-b': 'l-b' } } }, prefix, ['l-a'], ['l-b']);
  try {
    // l-a fences l-b: host B has it and fences it.
    t.like((await request(b, 'l-a', 'off l-b')).reply, { ok: true, state: 'off' });
    // The same request reaches A: its commit writing l-a's mark is applied, the answer held 2.5 s (past
    // the 2 s bound); what is sent then is answered at once, and after that etcd is slow again for 5 s.
    let first = true;
    const once = () => {
      const now = first;
      first = false;
      return now;
    };
    const rules = proxies.map((p) => p.onRequest('"holder":"l/l-a"', 2_500, { fire: once, again: 5_000 }));
    const atA = await request(a, 'l-a', 'off l-b');
    t.log(`at A: ${codes(atA.reply)}`);
    t.true(['not_found', 'coordination_unavailable'].includes(String(atA.reply.code)), codes(atA.reply));
    t.true(rules.some((r) => r.seen.length > 0), 'the commit went through the proxy');
    // Until A has written no mark for 5 s, l-b keeps trying to fence l-a (Pacemaker's retries; l-b's host is slow to die).
    const tries: string[] = [];
    for (;;) {
      const last = Math.max(...rules.flatMap((r) => r.seen));
      if (Date.now() - last > 5_000) break;
      const r = await request(b, 'l-b', 'off l-a');
      tries.push(String(r.reply.code));
      if (a.sim()['l-a'] !== 'running') break;
      t.regex(String(r.reply.message), /fence_race_lost/, `l-b was not refused: ${codes(r.reply)}`);
      await sleep(100);
    }
    t.is(a.sim()['l-a'], 'running', `both nodes fenced (l-b's tries: ${tries.join(',')})`);
    t.true(tries.length > 0);
    t.not((await keys(prefix, 'race/l-b')).length, 0, 'l-b is still marked');
    for (const r of rules) r.stop();
  } finally {
    await stopAll(a, b, ...proxies);
  }
});

test('a late commit after the reply: a claim that answered "coordination unavailable, nothing was done" writes nothing afterwards', async (t) => {
  const prefix = `/fb-late-commit-${process.pid}`;
  const { a, b, proxies } = await twoHosts(
    { m: { domains: ['m-a', 'm-b'], nodes: { 'm-a': 'm-a', 'm-b': 'm-b' }, extra: ['limits: { fences_per_window: 5, window: 60 }'] } },
    prefix, ['m-a'], ['m-b'],
  );
  try {
    // The facts read of m-a's own marks goes through; the claim's read of them (the second) is answered after 3 s.
    let n = 0;
    const holds: number[] = [];
    const second = () => {
      if (++n !== 2) return false;
      holds.push(Date.now());
      return true;
    };
    const rules = proxies.map((p) => p.onRequest('race/m-a', 3_000, { fire: second }));
    const r = await request(a, 'm-a', 'off m-b');
    t.like(r.reply, { ok: false, code: 'coordination_unavailable' }, codes(r.reply));
    t.regex(String(r.reply.message), /nothing was done/);
    t.is(holds.length, 1, 'the claim read was held');
    // The held answers arrive at 3 s; a claim still running would commit right after. Give it 2 s more.
    await sleep(Math.max(0, (holds[0] as number) + 5_000 - Date.now()));
    t.deepEqual(await keys(prefix, 'race/m-b'), [], 'no mark written after the reply');
    t.deepEqual(await keys(prefix, 'fences/m/'), [], 'no fence counted after the reply');
    // So m-b has not lost: it may still fence m-a (B lacks m-a, A does it).
    const back = await request(b, 'm-b', 'off m-a');
    t.not(back.reply.code, 'refused', codes(back.reply));
    for (const x of rules) x.stop();
  } finally {
    await stopAll(a, b, ...proxies);
  }
});

test('a destroy that outlives its deadline (TEST DOUBLE: fake-virsh holds it): the mark is renewed, so the peer still loses after the window from the claim', async (t) => {
  const prefix = `/fb-stuck-${process.pid}`;
  const fake = makeDouble('fake-virsh');
  fake.setDomain('o-a', 'running (booted)');
  fake.setDomain('o-b', 'running (booted)');
  writeFileSync(join(fake.dir, 'hold-destroy'), '');
  // fence_race at its floor: request 3 + 2 × coordination 2 + 5 = 12. The store's bound is not what this test
  // is about, so it is 2 s (1 s was missed once with two suites loading 2 cores).
  const d: Daemon = await startDaemon({
    clusters: { o: { domains: ['o-a', 'o-b'], nodes: { 'o-a': 'o-a', 'o-b': 'o-b' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
    extraBroker: ['  timeouts: { request: 3, fence_race: 12 }', ...coordination(etcd.endpoints, prefix, 2)],
  });
  try {
    const t0 = Date.now();
    const first = await request(d, 'o-a', 'off o-b');
    t.like(first.reply, { ok: false, code: 'failed' }, codes(first.reply));
    t.regex(String(first.reply.message), /not confirmed off/);
    // Past the window counted from the claim (12 s, and etcd's lease check): a mark not renewed has lapsed by now.
    await sleep(Math.max(0, t0 + 13_500 - Date.now()));
    const back = await request(d, 'o-b', 'off o-a');
    t.like(back.reply, { ok: false, code: 'refused' }, codes(back.reply));
    t.regex(String(back.reply.message), /fence_race_lost/);
    t.regex(fake.readFile('domains/o-a'), /running/);
    const audited = d.audit().find((l) => l.node === 'o-b');
    t.deepEqual((audited?.reasons as Reason[]).map((r) => r.code), ['fence_race_lost']);
  } finally {
    rmSync(join(fake.dir, 'hold-destroy'), { force: true });
    await d.stop();
  }
});

test('a storm: six nodes of one cluster fence six peers at once through two brokers under fences_per_window 1; exactly one is fenced and counted', async (t) => {
  const prefix = `/fb-storm6-${process.pid}`;
  const domains = Array.from({ length: 12 }, (_, i) => `s${i}`);
  const nodes = Object.fromEntries(domains.slice(0, 6).map((d) => [d, d]));
  const { a, b, proxies } = await twoHosts({ s: { domains, nodes, extra: ['limits: { fences_per_window: 1, window: 60 }'] } }, prefix, domains, []);
  try {
    // Each request reaches both brokers, as the plugin sends it; only host a has the domains.
    const pairs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => Promise.all([request(a, `s${i}`, `off s${i + 6}`), request(b, `s${i}`, `off s${i + 6}`)])));
    const replies = pairs.flat();
    const off = domains.slice(6).filter((d) => a.sim()[d] !== 'running');
    t.is(off.length, 1, `fenced: ${off.join(',')}; replies: ${replies.map((r) => codes(r.reply)).join(' | ')}`);
    const counted = await keys(prefix, 'fences/s/');
    t.is(counted.length, 1, 'the count etcd keeps');
    // The winner: done at a, not found at b (the same target again is no new domain, at either broker).
    const winner = pairs.find(([atA]) => atA.reply.code === 'ok');
    t.like(winner?.[0].reply, { ok: true, target: off[0] });
    t.is(winner?.[1].reply.code, 'not_found');
    const refused = replies.filter((r) => r.reply.code === 'refused');
    t.is(refused.length, 10, 'the five others, at both brokers');
    for (const r of refused) t.regex(String(r.reply.message), /fence_storm_limit: cluster s fenced 1 domains in the last 60 s \(limit 1\)/);
    const audited = [...a.audit(), ...b.audit()].filter((l) => l.code === 'refused');
    t.deepEqual(audited.map((l) => (l.reasons as Reason[]).map((r) => r.code).join()), Array.from({ length: 10 }, () => 'fence_storm_limit'));
  } finally {
    await stopAll(a, b, ...proxies);
  }
});
