// Fault injection through a TEST DOUBLE of virsh (test/doubles/fake-virsh):
// a hang, a lie, a crash mid-call, garbage output. In no case may the fencer
// report "off" while the domain could still be running.
import test from 'ava';
import { Fencer } from '../broker/fencer.js';
import { VirshToolstack } from '../broker/toolstack/virsh.js';
import { makeDouble } from './doubles.js';

const setup = (mode: string, initial = 'running (booted)') => {
  const fake = makeDouble('fake-virsh');
  fake.setFile('mode', mode);
  fake.setDomain('vm1', initial);
  const fencer = new Fencer(new VirshToolstack('test:///fake', 500, fake.command), { verifyMs: 1_500, pollMs: 50 });
  return { fake, fencer };
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('control: the double behaves like virsh when nothing is injected', async (t) => {
  const { fake, fencer } = setup('normal');
  const r = await fencer.do('off', 'vm1');
  t.true(r.ok, r.message);
  t.is(fake.readFile('domains/vm1').trim(), 'shut off (destroyed)');
});

test('hang: destroy that never returns times out, the child is killed, the result is failure', async (t) => {
  const { fake, fencer } = setup('hang');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.is(r.state, 'on');
  t.regex(r.steps.join(' | '), /destroy: .*timed out after 500 ms \(killed\)/);
  t.regex(r.message, /not confirmed off/);
  const pids = fake.readFile('pids').trim().split('\n').map(Number);
  t.true(pids.length >= 2);
  t.deepEqual(pids.filter(alive), [], 'no toolstack child left running');
});

test('lie: destroy exits 0 but the domain keeps running → failure, state on', async (t) => {
  const { fake, fencer } = setup('lie');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.is(r.state, 'on');
  t.true(r.steps.includes('destroy: done'), 'the toolstack claimed success');
  t.is(fake.readFile('domains/vm1').trim(), 'running (booted)');
});

test('crash mid-call: destroy dies by a signal after partial output → failure', async (t) => {
  const { fencer } = setup('crash');
  const r = await fencer.do('off', 'vm1');
  t.false(r.ok);
  t.is(r.state, 'on');
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
  const inner = new VirshToolstack('test:///fake', 500, fake.command);
  const ts = { ...inner, describe: inner.describe, list: () => inner.list(), state: (d: string) => inner.state(d), destroy: (d: string) => inner.destroy(d), start: async () => { throw new Error('start refused: out of memory'); } };
  const r = await new Fencer(ts, { verifyMs: 500, pollMs: 50 }).do('reset', 'vm1');
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
