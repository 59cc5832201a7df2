// Fault injection through a TEST DOUBLE of virsh (test/doubles/fake-virsh):
// a hang, a lie, a crash mid-call, garbage output, a request that gives up.
// In no case may the fencer report "off" while the domain could still be
// running. Bounds are short only where the bound firing is the point (the
// hang's per-call timeout, the verify window of a lie); every other toolstack
// call gets 30 s, so a busy machine cannot make a read time out.
import test from 'ava';
import { Fencer } from '../../broker/fencer.js';
import { VirshToolstack } from '../../broker/toolstack/virsh.js';
import { rmSync } from 'node:fs';
import { makeDouble } from '../doubles.js';
import { until, isAlive as alive } from '../helpers.js';

const GENEROUS_MS = 30_000;

const setup = (mode: string, { initial = 'running (booted)', callMs = GENEROUS_MS, verifyMs = 1_500 } = {}) => {
  const fake = makeDouble('fake-virsh');
  fake.setFile('mode', mode);
  fake.setDomain('vm1', initial);
  const toolstack = new VirshToolstack('test:///fake', callMs, fake.command);
  const fencer = new Fencer(toolstack, { verifyMs, pollMs: 50 });
  return { fake, fencer, toolstack };
};

/**
 * The virsh session a hung call ran in was killed (it is the first process the
 * double saw); the sessions still idle end when the toolstack closes.
 */
async function noToolstackLeft(fake: ReturnType<typeof makeDouble>, toolstack: VirshToolstack): Promise<number[]> {
  const pids = fake.readFile('pids').trim().split('\n').map(Number);
  await until('the hung session is dead', () => !alive(pids[0] ?? 0), 10_000);
  toolstack.close();
  await until('every session has ended', () => pids.every((p) => !alive(p)), 30_000);
  return pids;
}

test('control: the double behaves like virsh when nothing is injected', async (t) => {
  const { fake, fencer } = setup('normal');
  const r = await fencer.do('off', 'vm1');
  t.true(r.ok, r.message);
  t.is(fake.readFile('domains/vm1').trim(), 'shut off (destroyed)');
});

test('hang: destroy that never returns times out, the child is killed, the result is failure', async (t) => {
  // The per-call bound firing is the point here: 500 ms. Reads may hit it too on
  // a loaded machine, so the assertion is the property: never off.
  const { fake, fencer, toolstack } = setup('hang', { callMs: 500 });
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.not(r.state, 'off');
  t.regex(r.steps.join(' | '), /destroy: .*timed out after 500 ms \(killed\)/);
  t.regex(r.message, /not confirmed off/);
  t.true((await noToolstackLeft(fake, toolstack)).length >= 2, 'the reads after the kill ran in a new session');
});

test('lie: destroy exits 0 but the domain keeps running → failure, never off', async (t) => {
  const { fake, fencer } = setup('lie');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.not(r.state, 'off');
  t.true(r.steps.includes('destroy: done'), 'the toolstack claimed success');
  t.is(fake.readFile('domains/vm1').trim(), 'running (booted)');
});

test('crash mid-call: destroy dies by a signal after partial output → failure, never off', async (t) => {
  const { fencer } = setup('crash');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.not(r.state, 'off');
  t.regex(r.steps.join(' | '), /destroy: .*killed by SIGSEGV/);
});

test('crash while reading state: the state is unknown, never off', async (t) => {
  const { fencer } = setup('crash-state');
  const off = await fencer.do('off', 'vm1');
  t.false(off.ok);
  t.is(off.state, 'unknown');
  const status = await fencer.do('status', 'vm1');
  t.false(status.ok);
  t.is(status.state, 'unknown');
});

test('garbage output from domstate: unknown, and off is not reported', async (t) => {
  const { fencer } = setup('garbage');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.is(r.state, 'unknown');
  const s = await fencer.do('status', 'vm1');
  t.false(s.ok);
  t.is(s.state, 'unknown');
});

test('reset that cannot confirm off does not start the domain', async (t) => {
  const { fencer } = setup('lie');
  const r = await fencer.do('reset', 'vm1');
  t.false(r.ok);
  t.false(r.steps.some((s) => s.startsWith('start')));
});

test('reset whose start fails is still a successful fence, and says the start failed', async (t) => {
  const fake = makeDouble('fake-virsh');
  fake.setDomain('vm1', 'running (booted)');
  // A toolstack whose start always fails, around the double.
  const inner = new VirshToolstack('test:///fake', GENEROUS_MS, fake.command);
  const ts = { ...inner, describe: inner.describe, list: () => inner.list(), state: (d: string) => inner.state(d), destroy: (d: string) => inner.destroy(d), start: async () => { throw new Error('start refused: out of memory'); } };
  const r = await new Fencer(ts, { verifyMs: 500, pollMs: 50 }).do('reset', 'vm1');
  // Judged on the off part, which the double confirmed.
  t.true(r.ok);
  t.false(r.started);
  t.is(r.state, 'off');
  t.regex(r.message, /fenced \(off confirmed\) but did not start again/);
});

test('names off the pattern or bare numbers never reach the toolstack argv', async (t) => {
  const { fake, fencer } = setup('normal');
  for (const bad of ['vm1;id', '-rf', '42', '$(id)']) {
    const r = await fencer.do('off', bad);
    t.false(r.ok, bad);
    t.regex(r.message, /invalid domain name/, bad);
  }
  t.is(fake.readFile('pids').trim(), '', 'the fake toolstack was never run');
});

test('a request that gives up during a hanging destroy: the child is killed at once, nothing more runs, not off', async (t) => {
  const { fake, fencer, toolstack } = setup('hang');
  const ac = new AbortController();
  const pending = fencer.do('reset', 'vm1', { signal: ac.signal });
  // Wait for the event (the destroy has started), not for a time.
  await until('the destroy started', () => fake.readFile('calls').includes('destroy vm1'));
  ac.abort(new Error('request deadline of 40000 ms passed'));
  const r = await pending;
  t.false(r.ok);
  t.not(r.state, 'off');
  t.regex(r.message, /deadline/);
  t.regex(r.steps.join(' | '), /destroy: .*killed: request deadline/);
  t.false(fake.readFile('calls').includes('start'), 'no start after the request gave up');
  await noToolstackLeft(fake, toolstack);
});

test('a power action queued behind another and given up meanwhile never reaches the toolstack', async (t) => {
  const { fake, fencer } = setup('normal');
  fake.setFile('hold', '');
  const first = fencer.do('status', 'vm1'); // a read held in flight by the double
  await until('the read is in flight', () => fake.readFile('calls').includes('domstate'));
  const ac = new AbortController();
  const queued = fencer.do('off', 'vm1', { signal: ac.signal });
  ac.abort(new Error('requester disconnected'));
  const r = await queued;
  t.false(r.ok);
  t.true(r.dropped);
  t.regex(r.message, /dropped before reaching the toolstack: requester disconnected/);
  rmSync(`${fake.dir}/hold`);
  t.true((await first).ok);
  t.deepEqual(fake.readFile('calls').trim().split('\n'), ['domstate vm1'], 'only the held read ever ran');
  t.is(fake.readFile('domains/vm1').trim(), 'running (booted)');
});
