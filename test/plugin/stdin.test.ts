// The fence-agents face reads its options from stdin to end of file however
// they come: readToEnd on a stream, then the bundled agent through a real
// non-blocking pipe (feed-nonblocking.py sets O_NONBLOCK on the read end),
// the options in pieces with pauses, against the real daemon.
import test from 'ava';
import { execa } from 'execa';
import { constants } from 'node:fs';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectPath } from '../../common/paths.js';
import { readToEnd } from '../../plugin/stdin.js';
import { startDaemon } from '../broker-daemon.js';

const FEED = projectPath('test', 'plugin', 'feed-nonblocking.py');
const PLUGIN = projectPath('plugin', 'dist', 'fence_broker');

test('readToEnd: pieces cut anywhere (a UTF-8 character too) arriving slowly make the whole text', async (t) => {
  const input = new PassThrough();
  const text = 'action=off\nplug=blåbær-1\n';
  const bytes = Buffer.from(text);
  const read = readToEnd(input);
  for (let i = 0; i < bytes.length; i += 5) {
    await sleep(20);
    input.write(bytes.subarray(i, i + 5));
  }
  input.end();
  t.is(await read, text);
});

test('readToEnd: no end of file within the bound is an error that says so (a bound that fires: 200 ms here)', async (t) => {
  const input = new PassThrough();
  input.write('action=off\n');
  const e = await t.throwsAsync(readToEnd(input, 200));
  t.regex(e.message, /no end of file\) within 0\.2 s; 11 bytes read/);
  t.true(input.destroyed);
});

test('readToEnd: more than the byte cap is refused', async (t) => {
  const input = new PassThrough();
  const read = readToEnd(input, 5_000, 16);
  input.end('x'.repeat(17));
  t.regex((await t.throwsAsync(read)).message, /more than 16 bytes/);
});

test('the feeder\'s pipe is really non-blocking: O_NONBLOCK on the command\'s fd 0, and a plain readFileSync(0) of it fails with EAGAIN (as the old plugin did)', async (t) => {
  const probe = 'process.stderr.write(require("fs").readFileSync("/proc/self/fdinfo/0", "utf8")); require("fs").readFileSync(0)';
  const r = await execa(FEED, ['0', '0', process.execPath, '-e', probe], { input: '', reject: false, timeout: 60_000 });
  const flags = parseInt(/^flags:\s+(\d+)$/m.exec(String(r.stderr))?.[1] ?? '0', 8);
  t.true((flags & constants.O_NONBLOCK) !== 0, `fd 0 flags ${flags.toString(8)}: ${String(r.stderr)}`);
  t.not(r.exitCode, 0);
  t.regex(String(r.stderr), /EAGAIN: resource temporarily unavailable, read/);
});

test('the bundled agent with stdin held open and empty gives up after its bound (5 s) and says why', async (t) => {
  const r = await execa(FEED, ['0', '0', PLUGIN], { input: '', reject: false, timeout: 60_000 });
  t.is(r.exitCode, 1);
  t.regex(String(r.stderr), /^Failed: stdin: options not complete \(no end of file\) within 5 s; 0 bytes read$/m);
});

test('options through a non-blocking pipe in 3 pieces with pauses: 200 fences in a row succeed, each seen by the broker', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } }, simDomains: { 'blue-1': 'running', 'blue-2': 'running' } });
  try {
    const options = [`ip=127.0.0.1:${d.port}`, `identity_file=${d.key('blue-1')}`, `host_key_fingerprint=${d.fingerprint}`, 'login_timeout=30', 'broker_timeout=60', 'plug=blue-2'];
    const runs = 200;
    for (let i = 0; i < runs; i++) {
      // Off and on in turn: each run changes the domain's state.
      const action = i % 2 === 0 ? 'off' : 'on';
      const r = await execa(FEED, ['10', '3', PLUGIN], { input: [...options, `action=${action}`, ''].join('\n'), reject: false, timeout: 120_000 });
      if (r.exitCode !== 0) return t.fail(`run ${i + 1} (${action}): exit ${r.exitCode}: ${String(r.stderr)}`);
      t.is(d.sim()['blue-2'], action === 'off' ? 'shut off' : 'running', `run ${i + 1}`);
    }
    const requests = d.audit().filter((l) => l.target === 'blue-2');
    t.is(requests.length, runs);
    const bad = requests.find((l) => l.decision !== 'allow' || (l.result as { ok?: boolean } | null)?.ok !== true);
    t.is(bad, undefined, JSON.stringify(bad));
  } finally {
    await d.stop();
  }
});
