// The journal (broker/journal.ts): reading back the audit log's tail, bounded,
// across a rotation and past torn lines; and what the lines mean for local
// coordination. The daemon's own crash tests are in crash.test.ts.
import test from 'ava';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAuditTail, replay } from '../../broker/journal.js';
import { LocalCoordination } from '../../broker/coordination/local.js';
import type { Claim } from '../../broker/coordination/coordination.js';
import { tempDir } from '../helpers.js';

const NOW = Date.parse('2026-12-04T12:00:00.000Z');
const at = (secondsAgo: number) => new Date(NOW - secondsAgo * 1000).toISOString();
const line = (secondsAgo: number, fields: Record<string, unknown>) => `${JSON.stringify({ level: 30, time: at(secondsAgo), ...fields })}\n`;
const intent = (s: number, id: string, node: string, action: string, target: string) =>
  line(s, { event: 'intent', request_id: id, peer: '10.0.0.1:5000', fingerprint: `SHA256:${node}`, cluster: 'blue', node, action, target });
const outcome = (s: number, id: string, node: string, action: string, target: string, ok: boolean) =>
  line(s, { event: 'request', request_id: id, cluster: 'blue', node, action, target, decision: 'allow', result: { ok, state: ok ? 'off' : 'unknown', message: '' } });

test('reads only the tail within the lookback, however large the file', (t) => {
  const file = join(tempDir(), 'audit.jsonl');
  // 20 MB of old lines, then a few recent ones.
  const old = line(3600, { event: 'request', request_id: 'old', command: 'status x'.padEnd(400, 'x') });
  writeFileSync(file, old.repeat(Math.ceil(20e6 / old.length)));
  appendFileSync(file, intent(30, 'r1', 'blue-1', 'off', 'blue-2') + outcome(29, 'r1', 'blue-1', 'off', 'blue-2', true));
  const tail = readAuditTail(file, 120_000, NOW);
  t.deepEqual(tail.lines.map((l) => l.request_id), ['r1', 'r1']);
  t.true(tail.bytes <= 2 * 64 * 1024, `read ${tail.bytes} bytes of a 20 MB file`);
  t.deepEqual(tail.files, [file]);
  t.deepEqual(tail.torn, []);
});

test('a line longer than a read chunk is read whole', (t) => {
  const file = join(tempDir(), 'audit.jsonl');
  writeFileSync(file, line(10, { event: 'request', request_id: 'long', command: 'x'.repeat(200_000) }) + line(5, { event: 'start' }));
  const tail = readAuditTail(file, 60_000, NOW);
  t.deepEqual(tail.lines.map((l) => l.request_id ?? l.event), ['long', 'start']);
});

test('the previous file (logrotate .1) is read when the window reaches back into it, not otherwise', (t) => {
  const file = join(tempDir(), 'audit.jsonl');
  writeFileSync(`${file}.1`, line(500, { event: 'start' }) + intent(40, 'r1', 'blue-1', 'off', 'blue-2'));
  writeFileSync(file, outcome(39, 'r1', 'blue-1', 'off', 'blue-2', true));
  const tail = readAuditTail(file, 120_000, NOW);
  t.deepEqual(tail.files, [`${file}.1`, file]);
  t.deepEqual(tail.lines.map((l) => l.event), ['intent', 'request']);
  // The live file alone reaches back past the window: the rotated one is not opened.
  writeFileSync(file, line(300, { event: 'start' }) + outcome(39, 'r1', 'blue-1', 'off', 'blue-2', true));
  t.deepEqual(readAuditTail(file, 120_000, NOW).files, [file]);
  // No file yet at all: nothing to replay.
  t.deepEqual(readAuditTail(join(tempDir(), 'none.jsonl'), 120_000, NOW).lines, []);
});

test('a torn last line (a write cut short) is skipped and reported; the lines before it count', (t) => {
  const file = join(tempDir(), 'audit.jsonl');
  const torn = intent(5, 'r2', 'blue-2', 'off', 'blue-1').slice(0, 60);
  writeFileSync(file, intent(10, 'r1', 'blue-1', 'off', 'blue-2') + torn);
  const tail = readAuditTail(file, 60_000, NOW);
  t.deepEqual(tail.lines.map((l) => l.request_id), ['r1']);
  t.is(tail.torn.length, 1);
  t.like(tail.torn[0], { file, offset: intent(10, 'r1', 'blue-1', 'off', 'blue-2').length });
});

test('replay: a confirmed fence marks its target from its outcome; a failed one leaves no mark; both count toward the storm', (t) => {
  const lines = readLines(
    intent(50, 'a', 'blue-1', 'off', 'blue-2') + outcome(48, 'a', 'blue-1', 'off', 'blue-2', true) +
      intent(20, 'b', 'blue-1', 'reset', 'blue-3') + outcome(19, 'b', 'blue-1', 'reset', 'blue-3', false) +
      intent(10, 'c', 'blue-1', 'on', 'blue-4') + outcome(9, 'c', 'blue-1', 'on', 'blue-4', true),
  );
  const r = replay(lines, NOW);
  t.deepEqual(r.marks, [{ target: 'blue-2', holder: 'blue/blue-1', at: NOW - 48_000 }]);
  t.deepEqual(r.fences.map((f) => f.target), ['blue-2', 'blue-3']);
  t.deepEqual(r.interrupted, []);
});

test('replay: a failed fence whose destroy was issued and not refuted (it may still land) marks its target like a confirmed one', (t) => {
  const unrefuted = line(30, { event: 'request', request_id: 'u', cluster: 'blue', node: 'blue-1', action: 'off', target: 'blue-2', decision: 'allow', result: { ok: false, state: 'unknown', message: '', destroy_unrefuted: true } });
  const r = replay(readLines(intent(33, 'u', 'blue-1', 'off', 'blue-2') + unrefuted), NOW);
  t.deepEqual(r.marks, [{ target: 'blue-2', holder: 'blue/blue-1', at: NOW - 30_000 }]);
});

test('replay: an intent without an outcome is interrupted: reported once, its target marked from when it was found', (t) => {
  const text = intent(30, 'x', 'blue-1', 'off', 'blue-2') + intent(20, 'y', 'blue-1', 'on', 'blue-3');
  const first = replay(readLines(text), NOW);
  t.deepEqual(first.interrupted.map((i) => [i.request_id, i.action, i.target, i.node]), [['x', 'off', 'blue-2', 'blue-1'], ['y', 'on', 'blue-3', 'blue-1']]);
  t.like(first.interrupted[0], { peer: '10.0.0.1:5000', fingerprint: 'SHA256:blue-1', intent_time: at(30) });
  t.deepEqual(first.marks, [{ target: 'blue-2', holder: 'blue/blue-1', at: NOW }], 'an on leaves no mark');
  // The next start finds the report: nothing new to report, the mark runs from the report.
  const reported = line(15, { event: 'interrupted', ...first.interrupted[0] }) + line(15, { event: 'interrupted', ...first.interrupted[1] });
  const second = replay(readLines(text + reported), NOW + 5_000);
  t.deepEqual(second.interrupted, []);
  t.deepEqual(second.marks, [{ target: 'blue-2', holder: 'blue/blue-1', at: NOW - 15_000 }]);
  // Even once the intent itself is out of the lookback.
  t.deepEqual(replay(readLines(reported), NOW).marks, second.marks);
});

test('local coordination takes the replay back: the loser still loses, the storm count holds, lapsed windows are gone', async (t) => {
  const c = new LocalCoordination();
  c.restore({
    marks: [{ target: 'blue-2', holder: 'blue/blue-1', at: NOW - 10_000 }, { target: 'blue-4', holder: 'blue/blue-3', at: NOW - 70_000 }],
    fences: [{ cluster: 'blue', target: 'blue-2', at: NOW - 10_000 }, { cluster: 'blue', target: 'blue-4', at: NOW - 70_000 }, { cluster: 'red', target: 'red-1', at: NOW - 1_000 }],
    raceWindowMs: 60_000,
    stormWindowMs: (cluster) => (cluster === 'blue' ? 60_000 : undefined),
  }, NOW);
  const claim = (node: string, target: string): Claim => ({ cluster: 'blue', node, requesterDomain: node, target, requestId: `${node}->${target}`, raceWindowMs: 60_000, stormWindowMs: 60_000 });
  t.deepEqual(await c.claim(claim('blue-2', 'blue-1')), { outcome: 'lost' });
  t.deepEqual(await c.claim(claim('blue-4', 'blue-3')), { outcome: 'claimed' }, 'the 70 s old mark has lapsed');
  t.like(await c.facts({ cluster: 'blue', node: 'blue-1', requesterDomain: 'blue-1' }), { recentFences: 2 }, 'blue-2 restored + blue-3 just claimed');
  t.like(await c.facts({ cluster: 'red', node: 'red-2', requesterDomain: 'red-2' }), { recentFences: 0 }, 'a cluster without a limit counts nothing');
});

function readLines(text: string) {
  const file = join(tempDir(), 'audit.jsonl');
  writeFileSync(file, text);
  return readAuditTail(file, 3_600_000, NOW + 60_000).lines;
}
