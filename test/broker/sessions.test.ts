// Sessions per connection are capped (limits.max_sessions, like OpenSSH's
// MaxSessions), through the real daemon: 200 channels opened at once on one
// connection, while every accepted one is held open by a state read the TEST
// DOUBLE of virsh keeps in flight.
import test from 'ava';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../broker-daemon.js';
import { makeDouble } from '../doubles.js';
import { within } from '../helpers.js';
import { answerOf, connectAs, execOn } from '../ssh-client.js';

test('200 channels on one connection: 10 are served, 190 refused, and the connection still works after', async (t) => {
  const fake = makeDouble('fake-virsh');
  fake.setDomain('blue-1', 'running (booted)');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
  });
  // Once (in CI, under load) this test stalled with no output; if a step ever
  // hangs again, it fails saying where, with both ends' last words.
  const clientDebug: string[] = [];
  const debug = (line: string) => {
    clientDebug.push(line);
    if (clientDebug.length > 200) clientDebug.splice(0, 100);
  };
  let served: unknown[] = [];
  let refusedCount = 0;
  const state = () =>
    `served ${served.length}, refused ${refusedCount}; toolstack calls: ${JSON.stringify(fake.readFile('calls').split('\n').slice(-5))}; ` +
    `client (ssh2) last: ${JSON.stringify(clientDebug.slice(-15))}; daemon log: ${d.logTail(3000)}`;
  try {
    writeFileSync(join(fake.dir, 'hold'), '');
    const c = await within('connecting', connectAs(d, 'blue-1', { debug }), 120_000, state);
    const opening = Array.from({ length: 200 }, () =>
      execOn(c, 'status blue-1').then(
        (ch) => (served.push(ch), ch),
        (err: unknown) => {
          refusedCount++;
          throw err;
        },
      ),
    );
    const opened = await within('opening 200 channels', Promise.allSettled(opening), 120_000, state);
    served = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const refused = opened.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []));
    t.is(served.length, 10);
    t.is(refused.length, 190);
    t.log(`refusal as the client sees it: ${refused[0]}`);

    rmSync(join(fake.dir, 'hold'));
    const answers = await within('the 10 served replies', Promise.all((served as Parameters<typeof answerOf>[0][]).map(answerOf)), 120_000, state);
    t.true(answers.every((a) => a.exitCode === 0 && a.reply.ok === true));
    // The cap is on sessions open at once: with those closed, the same connection serves again.
    const again = await within('a request after the cap', execOn(c, 'status blue-1').then(answerOf), 120_000, state);
    t.like(again.reply, { ok: true, state: 'on' });
    c.end();
    t.is(d.audit().length, 11, 'refused channel opens never became requests');
  } finally {
    if (existsSync(join(fake.dir, 'hold'))) rmSync(join(fake.dir, 'hold'));
    await within('stopping the daemon', d.stop(), 120_000, state);
  }
});
