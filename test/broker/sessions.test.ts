// Sessions per connection are capped (limits.max_sessions, like OpenSSH's
// MaxSessions), through the real daemon: 200 channels opened at once on one
// connection, while every accepted one is held open by a state read the TEST
// DOUBLE of virsh keeps in flight.
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../broker-daemon.js';
import { makeDouble } from '../doubles.js';
import { answerOf, connectAs, execOn } from '../ssh-client.js';

test('200 channels on one connection: 10 are served, 190 refused, and the connection still works after', async (t) => {
  const fake = makeDouble('fake-virsh');
  fake.setDomain('blue-1', 'running (booted)');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
  });
  try {
    writeFileSync(join(fake.dir, 'hold'), '');
    const c = await connectAs(d, 'blue-1');
    const opened = await Promise.allSettled(Array.from({ length: 200 }, () => execOn(c, 'status blue-1')));
    const served = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const refused = opened.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []));
    t.is(served.length, 10);
    t.is(refused.length, 190);
    t.log(`refusal as the client sees it: ${refused[0]}`);

    rmSync(join(fake.dir, 'hold'));
    const answers = await Promise.all(served.map(answerOf));
    t.true(answers.every((a) => a.exitCode === 0 && a.reply.ok === true));
    // The cap is on sessions open at once: with those closed, the same connection serves again.
    t.like((await answerOf(await execOn(c, 'status blue-1'))).reply, { ok: true, state: 'on' });
    c.end();
    t.is(d.audit().length, 11, 'refused channel opens never became requests');
  } finally {
    await d.stop();
  }
});
