// The local coordination's claim rules, called directly (the etcd one is
// driven through real brokers in test/broker/coordination.test.ts).
import test from 'ava';
import { LocalCoordination } from '../../../broker/coordination/local.js';
import type { Claim } from '../../../broker/coordination/coordination.js';
import { fleetDomains, fleetHosts } from '../../../broker/coordination/fleet.js';

const claim = (node: string, target: string, extra: Partial<Claim> = {}): Claim => ({
  cluster: 'blue', node, requesterDomain: node, target, requestId: `${node}->${target}`, raceWindowMs: 60_000, ...extra,
});

test('of two nodes fencing each other, the second to claim has lost; the winner may claim again (the same request at another broker)', async (t) => {
  const c = new LocalCoordination();
  t.deepEqual(await c.claim(claim('blue-1', 'blue-2')), { outcome: 'claimed' });
  t.deepEqual(await c.claim(claim('blue-2', 'blue-1')), { outcome: 'lost' });
  t.deepEqual(await c.claim(claim('blue-1', 'blue-2')), { outcome: 'claimed' });
  t.like(await c.facts({ cluster: 'blue', node: 'blue-2', requesterDomain: 'blue-2' }), { requesterFenced: true });
  t.like(await c.facts({ cluster: 'blue', node: 'blue-1', requesterDomain: 'blue-1' }), { requesterFenced: false });
});

test('another node fencing the same target takes the mark over; the target stays marked until the last fence ends, then for the window', async (t) => {
  const c = new LocalCoordination();
  const first = claim('blue-1', 'blue-3');
  const second = claim('blue-2', 'blue-3');
  t.deepEqual(await c.claim(first), { outcome: 'claimed' });
  t.deepEqual(await c.claim(second), { outcome: 'claimed' });
  await c.finish(first, 'untouched');
  t.deepEqual(await c.claim(claim('blue-3', 'blue-1')), { outcome: 'lost' }, 'still being fenced by blue-2');
  await c.finish(second, 'fenced');
  t.like(await c.facts({ cluster: 'blue', node: 'blue-3', requesterDomain: 'blue-3' }), { requesterFenced: true }, 'fenced: lost for the window');
  const short = new LocalCoordination();
  const quick = claim('blue-1', 'blue-3', { raceWindowMs: 0 });
  await short.claim(quick);
  await short.finish(quick, 'fenced');
  t.deepEqual(await short.claim(claim('blue-3', 'blue-1')), { outcome: 'claimed' }, 'past the window the mark is gone');
});

test('the storm count: distinct targets within the window, a target fenced again counted once', async (t) => {
  const c = new LocalCoordination();
  for (const target of ['blue-2', 'blue-3', 'blue-2']) {
    const k = claim('blue-1', target, { stormWindowMs: 60_000 });
    await c.claim(k);
    await c.finish(k, 'fenced');
  }
  t.is((await c.facts({ cluster: 'blue', node: 'blue-1', requesterDomain: 'blue-1' })).recentFences, 2);
  t.is((await c.facts({ cluster: 'red', node: 'red-1', requesterDomain: 'red-1' })).recentFences, 0);
});

test('the storm limit is checked inside the claim: six fences at once under limit 1 leave one; the same target again is not a new one', async (t) => {
  const c = new LocalCoordination();
  const storm = { stormWindowMs: 60_000, stormLimit: 1 };
  const outcomes = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => c.claim(claim(`blue-${i}`, `blue-${i + 6}`, storm))));
  t.is(outcomes.filter((o) => o.outcome === 'claimed').length, 1);
  t.deepEqual(outcomes.filter((o) => o.outcome !== 'claimed'), Array.from({ length: 5 }, () => ({ outcome: 'storm', recentFences: 1 })));
  t.is((await c.facts({ cluster: 'blue', node: 'blue-1', requesterDomain: 'blue-1' })).recentFences, 1);
  t.deepEqual(await c.claim(claim('blue-2', 'blue-7', storm)), { outcome: 'claimed' }, 'the counted target again (the same request at another broker)');
});

test('the facts the policy sees leave the request\'s own target out of the storm count: a domain already counted (by the same request at a broker without it) is no new one', async (t) => {
  const c = new LocalCoordination();
  await c.claim(claim('blue-1', 'blue-7', { stormWindowMs: 60_000, stormLimit: 1 }));
  const facts = (target?: string) => c.facts({ cluster: 'blue', node: 'blue-1', requesterDomain: 'blue-1', ...(target ? { target } : {}) });
  t.is((await facts('blue-7')).recentFences, 0, 'fencing blue-7 again adds no domain: under limit 1 the policy allows it');
  t.is((await facts('blue-8')).recentFences, 1, 'another domain would be the second');
  t.is((await facts()).recentFences, 1);
});

test('a fence that may still land (a destroy issued, not confirmed) keeps its mark for the window; an untouched target does not', async (t) => {
  const c = new LocalCoordination();
  const unsure = claim('blue-1', 'blue-2');
  await c.claim(unsure);
  await c.finish(unsure, 'unsure');
  t.deepEqual(await c.claim(claim('blue-2', 'blue-1')), { outcome: 'lost' });
  const untouched = claim('blue-3', 'blue-4');
  await c.claim(untouched);
  await c.finish(untouched, 'untouched');
  t.deepEqual(await c.claim(claim('blue-4', 'blue-3')), { outcome: 'claimed' });
});

test('fleet view: the odd broker out is flagged; a domain on several hosts is flagged', (t) => {
  const host = (id: string, policy: string, domains: Record<string, string>) => ({ host_id: id, listen: `${id}:2222`, config_digest: 'sha256:x', policy_revision: policy, domains, at: '' });
  const hosts = [host('a', 'r1', { d1: 'on' }), host('b', 'r1', { d1: 'on', d2: 'off' }), host('c', 'r2', {})];
  t.deepEqual(fleetHosts(hosts).map((r) => [r.host_id, r.flags]), [['a', []], ['b', []], ['c', ['policy_differs']]]);
  t.deepEqual(fleetDomains(hosts), [
    { domain: 'd1', hosts: { a: 'on', b: 'on' }, flags: ['on_several_hosts'] },
    { domain: 'd2', hosts: { b: 'off' }, flags: [] },
  ]);
});
