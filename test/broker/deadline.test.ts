// A fence never runs late (docs/design.md §3.7), through the real SSH front door: a
// request whose requester disconnected, or whose deadline passed, while it
// waited is dropped before it touches the toolstack, and its audit line says
// so. The hypervisor is a TEST DOUBLE of virsh that records every call and can
// hold a state read in flight (the `hold` file), so the queued fence waits
// exactly as long as the test wants: events, not timers, order everything.
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { makeDouble, type Double } from '../doubles.js';
import { until } from '../helpers.js';
import { answerOf, closed, connectAs, execOn } from '../ssh-client.js';

async function setup(extraBroker: string[] = []): Promise<{ d: Daemon; fake: Double }> {
  const fake = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2']) fake.setDomain(dom, 'running (booted)');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-3': 'blue-2' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
    extraBroker,
  });
  return { d, fake };
}

const calls = (fake: Double) => fake.readFile('calls').trim().split('\n').filter(Boolean);
const auditOf = (d: Daemon, action: string) => d.audit().filter((l) => l.action === action);

test('a fence whose requester disconnected while it was queued never reaches the toolstack', async (t) => {
  const { d, fake } = await setup();
  try {
    // A status read of blue-2, held in flight by the double.
    writeFileSync(join(fake.dir, 'hold'), '');
    const reader = await connectAs(d, 'blue-3');
    const status = answerOf(await execOn(reader, 'status blue-2'));
    await until('the read is in flight', () => calls(fake).includes('domstate blue-2'));

    // The fence queues behind it (the broker accepted the exec), then its requester goes away.
    const fencer = await connectAs(d, 'blue-1');
    await execOn(fencer, 'off blue-2');
    const gone = closed(fencer);
    fencer.destroy();
    await gone;
    await until('the dropped fence is audited', () => auditOf(d, 'off').length === 1);

    rmSync(join(fake.dir, 'hold'));
    t.like((await status).reply, { ok: true, state: 'on' });
    reader.end();

    const [line] = auditOf(d, 'off');
    t.like(line, { decision: 'allow', target: 'blue-2', client_gone: true, code: 'failed', result: { ok: false, dropped: true } });
    t.regex(String((line?.result as { message: string }).message), /dropped before reaching the toolstack: requester (disconnected|closed the channel)/);
    t.false(calls(fake).some((c) => c.startsWith('destroy')), `toolstack calls: ${calls(fake).join(', ')}`);
    t.is(fake.readFile('domains/blue-2').trim(), 'running (booted)');
  } finally {
    await d.stop();
  }
});

test('a fence whose deadline passed while it was queued is refused to its requester and never reaches the toolstack', async (t) => {
  // The deadline firing is the point: 2 s.
  const { d, fake } = await setup(['  timeouts: { request: 2 }']);
  try {
    writeFileSync(join(fake.dir, 'hold'), '');
    const reader = await connectAs(d, 'blue-3');
    const status = answerOf(await execOn(reader, 'status blue-2'));
    await until('the read is in flight', () => calls(fake).includes('domstate blue-2'));

    const fencer = await connectAs(d, 'blue-1');
    const fence = await answerOf(await execOn(fencer, 'off blue-2'));
    fencer.end();
    t.is(fence.exitCode, 1);
    t.like(fence.reply, { ok: false, code: 'failed', action: 'off', target: 'blue-2' });
    t.regex(String(fence.reply.message), /dropped before reaching the toolstack: request deadline of 2000 ms passed/);
    t.false(calls(fake).some((c) => c.startsWith('destroy')), 'told it failed, and nothing was done');

    // The reader's own deadline passed too; the shared read itself was not cut short for it.
    const read = await status;
    t.like(read.reply, { ok: false, code: 'failed' });
    rmSync(join(fake.dir, 'hold'));
    reader.end();

    const [line] = auditOf(d, 'off');
    t.like(line, { decision: 'allow', code: 'failed', exit_code: 1, result: { dropped: true } });
    t.false('client_gone' in (line ?? {}));
    t.false(calls(fake).some((c) => c.startsWith('destroy')));
    t.is(fake.readFile('domains/blue-2').trim(), 'running (booted)');
  } finally {
    await d.stop();
  }
});
