// The virsh session pool (broker/toolstack/virsh-session.ts) through the virsh
// TEST DOUBLE (test/doubles/fake-virsh), for what real libvirt cannot be made
// to do on cue: reconnect notices, a session killed between calls, more calls
// at once than sessions, a failing command followed by a good one, wrappers
// that are not interactive (and real virsh behind one). Real libvirt runs
// through the same pool in test/libvirt.test.ts.
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VirshToolstack } from '../../../broker/toolstack/virsh.js';
import { VirshSessions } from '../../../broker/toolstack/virsh-session.js';
import { makeDouble } from '../../doubles.js';
import { cleanup, until, isAlive as alive, tempDir } from '../../helpers.js';

const CALL_MS = 30_000;
function setup(mode = 'normal', domains = ['vm1']) {
  const fake = makeDouble('fake-virsh');
  fake.setFile('mode', mode);
  for (const d of domains) fake.setDomain(d, 'running (booted)');
  const toolstack = new VirshToolstack('test:///fake', CALL_MS, fake.command);
  const pids = () => fake.readFile('pids').trim().split('\n').filter(Boolean).map(Number);
  return { fake, toolstack, pids };
}

test('libvirt reconnect notices on stderr are not a failure: reads and a destroy succeed', async (t) => {
  const { fake, toolstack } = setup('reconnect');
  try {
    t.like(await toolstack.state('vm1'), { observed: 'running', raw: 'running (booted)' });
    await toolstack.destroy('vm1');
    t.like(await toolstack.state('vm1'), { observed: 'stopped' });
    t.is(fake.readFile('pids').trim().split('\n').length, 1, 'all of it through one session');
  } finally {
    toolstack.close();
  }
});

test('a session killed between calls is replaced; the next call succeeds in a new one', async (t) => {
  const { toolstack, pids } = setup();
  try {
    t.like(await toolstack.state('vm1'), { observed: 'running' });
    const [first] = pids();
    process.kill(first!, 'SIGKILL');
    await until('the session is dead', () => !alive(first!));
    t.like(await toolstack.state('vm1'), { observed: 'running' });
    t.is(pids().length, 2);
  } finally {
    toolstack.close();
  }
});

test('a failing command does not leak into the next: a missing domain, then a running one', async (t) => {
  const { toolstack } = setup();
  try {
    t.like(await toolstack.state('ghost'), { observed: 'missing' });
    await t.throwsAsync(toolstack.destroy('ghost'), { message: /destroy --domain ghost: exit 1: error: failed to get domain 'ghost'/ });
    t.like(await toolstack.state('vm1'), { observed: 'running', raw: 'running (booted)' });
    await toolstack.destroy('vm1');
  } finally {
    toolstack.close();
  }
});

test('more calls at once than sessions: eight sessions, the rest run as their own virsh, all answer', async (t) => {
  const names = Array.from({ length: 10 }, (_, i) => `vm${i}`);
  const { fake, toolstack, pids } = setup('normal', names);
  const hold = join(fake.dir, 'hold');
  try {
    writeFileSync(hold, '');
    const reads = names.map((n) => toolstack.state(n));
    await until('ten reads are in flight', () => fake.readFile('calls').trim().split('\n').length === 10);
    t.is(pids().length, 10, '8 sessions and 2 processes of their own');
    rmSync(hold);
    for (const s of await Promise.all(reads)) t.is(s.observed, 'running', s.name);
    // The two extra processes exited with their command; the sessions stay for the next calls.
    await until('the extra processes exited', () => pids().filter(alive).length === 8);
  } finally {
    await cleanup(
      () => rmSync(hold, { force: true }),
      () => toolstack.close(),
    );
  }
});

// A `command:` wrapper that is not interactive: sessions cannot start, so each
// call runs as its own process, and the pool stops trying sessions for a while.
const STATE = ['domstate', '--reason', '--domain', 'vm1'];

test('a wrapper that exits without a command: each call runs as its own process; one session tried, and why it failed kept', async (t) => {
  const { fake, pids } = setup('no-session');
  const pool = new VirshSessions(fake.command, 'test:///fake');
  try {
    for (let i = 0; i < 3; i++) t.like(await pool.run(STATE, CALL_MS), { exitCode: 0, stdout: 'running (booted)' });
    t.like(await pool.run(['destroy', '--domain', 'vm1'], CALL_MS), { exitCode: 0 });
    t.regex(pool.fallback ?? '', /virsh session ended \(exit 2\): fake-virsh wrapper: a command is required/);
    t.is(fake.readFile('calls').trim().split('\n').length, 4, 'four commands, each as its own process');
    t.is(pids().length, 5, 'those four and one session attempt, not one per call');
  } finally {
    pool.close();
  }
});

test('a wrapper that never answers on stdin: the session is killed after its start bound and the call still answers as a process', async (t) => {
  const { fake, pids } = setup('mute-session');
  const pool = new VirshSessions(fake.command, 'test:///fake');
  try {
    t.like(await pool.run(STATE, CALL_MS), { exitCode: 0, stdout: 'running (booted)' });
    t.regex(pool.fallback ?? '', /did not answer within 5000 ms/);
    const [mute] = pids();
    await until('the silent session is killed', () => !alive(mute!));
    t.like(await pool.run(STATE, CALL_MS), { exitCode: 0 });
    t.is(pids().length, 3, 'the silent session and two processes');
  } finally {
    pool.close();
  }
});

test('real virsh behind a wrapper that gives it no stdin (test:///default): state and destroy answer, one virsh per call', async (t) => {
  const dir = tempDir('fb-virsh-wrapper-');
  const wrapper = join(dir, 'virsh-wrapper');
  writeFileSync(wrapper, `#!/bin/sh\necho "$*" >>${dir}/runs\nexec virsh "$@" </dev/null\n`, { mode: 0o755 });
  const toolstack = new VirshToolstack('test:///default', CALL_MS, wrapper);
  try {
    t.like(await toolstack.state('test'), { observed: 'running' });
    await toolstack.destroy('test');
    t.like(await toolstack.state('test'), { observed: 'running' }, 'each process has its own test driver: the destroy did not outlive it');
    const runs = readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n');
    t.deepEqual(runs, ['-q -c test:///default', '--quiet -c test:///default domstate --reason --domain test', '--quiet -c test:///default destroy --domain test', '--quiet -c test:///default domstate --reason --domain test']);
  } finally {
    toolstack.close();
  }
});
