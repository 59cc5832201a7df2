// Fencing cannot be starved (docs/design.md §3.7), through the real SSH front door:
// a node floods `status` of its own domain, then its peer fences it. The
// hypervisor is a TEST DOUBLE of virsh whose every state read takes 1 s, so
// 300 reads queued one after another would hold a fence for 300 s; shared
// reads and power-before-reads keep the fence at its normal time.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../broker-daemon.js';
import { makeDouble } from '../doubles.js';
import { answerOf, connectAs, execOn, request, type Answer } from '../ssh-client.js';

test('300 queued status requests from blue-2 do not delay blue-1\'s off of blue-2', async (t) => {
  const fake = makeDouble('fake-virsh');
  for (const d of ['blue-1', 'blue-2', 'blue-3']) fake.setDomain(d, 'running (booted)');
  writeFileSync(join(fake.dir, 'delay'), '1\n');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
    // Bounds wide enough that all 300 reads are really queued: what protects the fence here is the order, not a bound.
    extraBroker: [
      '  limits: { max_per_identity: 40, max_per_cluster: 50, max_unauthenticated_per_source: 50, max_queue_per_identity: 400, max_reads_per_domain: 400 }',
    ],
  });
  try {
    // The off's normal time on this double, alone: a read, the destroy, a read.
    const alone = await request(d, 'blue-1', 'off blue-3');
    t.is(alone.exitCode, 0, JSON.stringify(alone.reply));
    const normalMs = Number(d.audit().find((l) => l.target === 'blue-3')?.duration_ms);

    // The flood: 30 connections of blue-2, 10 channels each, 300 `status blue-2` accepted by the broker.
    const clients = await Promise.all(Array.from({ length: 30 }, () => connectAs(d, 'blue-2')));
    const callsBefore = fake.readFile('calls').split('\n').filter((l) => l === 'domstate blue-2').length;
    const channels = await Promise.all(clients.flatMap((c) => Array.from({ length: 10 }, () => execOn(c, 'status blue-2'))));
    const statuses = channels.map(answerOf);
    t.is(channels.length, 300);

    // Now the fence, while the reads are queued.
    const fence = await request(d, 'blue-1', 'off blue-2');
    t.is(fence.exitCode, 0, JSON.stringify(fence.reply));
    t.like(fence.reply, { ok: true, state: 'off', code: 'ok' });
    const fenceMs = Number(d.audit().find((l) => l.target === 'blue-2' && l.action === 'off')?.duration_ms);

    const answers: Answer[] = await Promise.all(statuses);
    for (const c of clients) c.end();
    const reads = fake.readFile('calls').split('\n').filter((l) => l === 'domstate blue-2').length - callsBefore;
    t.log(`off alone ${normalMs} ms; off during the flood ${fenceMs} ms; 300 status requests took ${reads} toolstack reads (1 s each)`);
    // The fence waited at most for the one read running (1 s): far below 300 serialized reads.
    t.true(fenceMs < normalMs + 15_000, `off took ${fenceMs} ms against ${normalMs} ms alone`);
    t.true(answers.every((a) => a.exitCode === 0 && a.reply.ok === true), 'every status answered (the fence-race loser may still read)');
    t.true(reads < 60, `${reads} toolstack reads for 300 status requests: reads in flight together share one`);
    t.is(fake.readFile('domains/blue-2').trim(), 'shut off (destroyed)');
  } finally {
    await d.stop();
  }
});
