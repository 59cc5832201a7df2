// Revocation is immediate (docs/design.md §3.9), through the real daemon: a reload
// (SIGHUP) that removes a key, or maps it to another node, closes every
// connection authenticated with it, even one opened before the reload; other
// tenants' connections stay up.
import test from 'ava';
import { startDaemon } from '../broker-daemon.js';
import { answerOf, closed, connectAs, execOn, request } from '../ssh-client.js';

test('a key removed or remapped by a reload can do nothing more, even on a connection opened before', async (t) => {
  const d = await startDaemon({
    clusters: {
      blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } },
      red: { domains: ['red-1'], nodes: { 'red-a': 'red-1' } },
    },
  });
  try {
    const removed = await connectAs(d, 'blue-1');
    const remapped = await connectAs(d, 'blue-2');
    const kept = await connectAs(d, 'red-a');
    t.like((await answerOf(await execOn(removed, 'status blue-2'))).reply, { ok: true });
    const removedClosed = closed(removed);
    const remappedClosed = closed(remapped);

    // blue-1's key is deleted; blue-2's key now belongs to a node of another name (same key, other identity).
    const outcome = await d.reload((yaml) =>
      yaml
        .split('\n')
        .filter((l) => !l.includes('blue-1: { key:'))
        .map((l) => l.replace('      blue-2: { key:', '      blue-2b: { key:'))
        .join('\n'),
    );
    t.is(outcome.msg, 'reloaded');
    t.is(outcome.connections_closed, 2);
    await removedClosed;
    await remappedClosed;

    // The removed key cannot get back in; the remapped one gets in as its new identity only.
    await t.throwsAsync(connectAs(d, 'blue-1'));
    const asNew = await request(d, 'blue-2', 'off blue-1');
    t.is(asNew.exitCode, 0);
    const last = d.audit().at(-1);
    t.like(last, { cluster: 'blue', node: 'blue-2b', action: 'off', target: 'blue-1' });

    // red was not touched: its connection, opened before the reload, still works.
    t.like((await answerOf(await execOn(kept, 'status red-1'))).reply, { ok: true, state: 'on' });
    kept.end();
    t.is(d.sim()['blue-2'], 'running', 'nothing was done with the revoked keys');
  } finally {
    await d.stop();
  }
});

test('a reload that fails keeps the running config, and closes nothing', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } } });
  try {
    const c = await connectAs(d, 'blue-1');
    const outcome = await d.reload((yaml) => yaml.replace('clusters:', 'clusters: [broken'));
    t.regex(String(outcome.msg), /reload failed/);
    t.like((await answerOf(await execOn(c, 'status blue-2'))).reply, { ok: true });
    c.end();
  } finally {
    await d.stop();
  }
});
