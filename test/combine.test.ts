// The plugin's rule for several brokers (plugin/fencing.ts combine): a host
// that lacks the domain is no proof of off; an unanswered broker fails the request.
import test from 'ava';
import type { Reply } from '../plugin/client.js';
import { combine } from '../plugin/fencing.js';

const r = (broker: string, ok: boolean, code: Reply['code'], state: Reply['state'] = 'unknown'): Reply => ({
  ok, code, state, broker, action: 'off', target: 'vm', message: code, exitCode: ok ? 0 : 1,
});

test('off: one host did it and the others lack the domain → success', (t) => {
  t.like(combine('off', [r('a', true, 'ok', 'off'), r('b', false, 'not_found')]), { ok: true, state: 'off' });
});

test('off: a broker that could not be asked, or failed, makes it a failure', (t) => {
  t.like(combine('off', [r('a', true, 'ok', 'off'), r('b', false, 'unreachable')]), { ok: false });
  t.like(combine('off', [r('a', true, 'ok', 'off'), r('b', false, 'failed', 'on')]), { ok: false, state: 'on' });
});

test('off: nobody has it → not found, and flagged as an unknown target', (t) => {
  const o = combine('off', [r('a', false, 'not_found'), r('b', false, 'not_found')]);
  t.false(o.ok);
  t.true(o.unknownTarget);
  t.regex(o.message, /not found on any broker/);
  t.true(combine('off', [r('a', false, 'refused')]).unknownTarget);
  t.falsy(combine('off', [r('a', false, 'refused'), r('b', false, 'unreachable')]).unknownTarget);
});

test('status: on anywhere is on; off needs every broker to answer', (t) => {
  t.like(combine('status', [r('a', true, 'ok', 'off'), r('b', true, 'ok', 'on')]), { ok: true, state: 'on' });
  t.like(combine('status', [r('a', true, 'ok', 'off'), r('b', false, 'not_found')]), { ok: true, state: 'off' });
  t.like(combine('status', [r('a', true, 'ok', 'off'), r('b', false, 'unreachable')]), { ok: false, state: 'unknown' });
});

test('list: the union of what each broker allows; a silent broker fails it', (t) => {
  const a = { ...r('a', true, 'ok'), domains: ['x', 'y'] };
  const b = { ...r('b', true, 'ok'), domains: ['y', 'z'] };
  t.deepEqual(combine('list', [a, b]).domains, ['x', 'y', 'z']);
  t.false(combine('list', [a, r('c', false, 'unreachable')]).ok);
});
