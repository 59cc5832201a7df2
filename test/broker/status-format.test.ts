// The pure parts of fencectl status and the request log line: how a
// duration, a status report and a request read for a person.
import test from 'ava';
import { duration, formatStatus } from '../../broker/admin/status.js';
import { requestLine } from '../../broker/request-log.js';
import type { AuditRecord } from '../../broker/audit.js';
import type { StatusReport } from '../../broker/status.js';

test('durations: leading zero units left out, the rest padded', (t) => {
  t.is(duration(0), '0s');
  t.is(duration(59), '59s');
  t.is(duration(61), '1m 01s');
  t.is(duration(3600), '1h 00m 00s');
  t.is(duration(90061), '1d 01h 01m 01s');
});

const base: StatusReport = {
  ok: true,
  pid: 42,
  started_at: '2026-12-05T07:00:00.000Z',
  uptime_s: 3725,
  config: { file: '/etc/fence-broker/clusters.yaml', sha256: 'ab'.repeat(32), tenancy: 'sha256:0123456789abcdef', loaded_at: '2026-12-05T07:00:01.000Z' },
  policy: { revision: 'rego-0123456789abcdef', sha256: 'cd'.repeat(32) },
  host_key: 'SHA256:x',
  host_id: 'host-a',
  toolstack: 'virsh qemu:///system',
  doors: [{ door: 'ssh', listen: '[::1]:2222', connections: { unauthenticated: 1, authenticated: 2 } }],
  requests_in_progress: 1,
  fences_in_flight: [{ request_id: 'r1', door: 'ssh', cluster: null, node: null, admin: 'ops', action: 'on', target: 'd1', since: '2026-12-05T08:02:04.000Z', elapsed_ms: 1500 }],
  coordination: { describe: 'local (this host only)', marks: [{ target: 'd2', holder: 'web/web-1', inflight: 0, expiresInMs: 30_000 }], storms: [{ cluster: 'web', domains: ['d2', 'd3'] }] },
};

test('a status report, as a person reads it', (t) => {
  const text = formatStatus(base);
  t.true(text.startsWith('fence-broker pid 42, up 1h 02m 05s (since 2026-12-05T07:00:00.000Z)\n'), text);
  t.true(text.includes('\n  ssh        [::1]:2222   unauthenticated 1, authenticated 2\n'), text);
  t.true(text.includes('\n  on d1 by admin ops via ssh, 1.5 s so far (request r1)\n'), text);
  t.true(text.includes('\n    d2 marked by web/web-1, lapses in 30.0 s\n'), text);
  t.true(text.endsWith('\n  storm counts: web 2\n    web: d2 d3'), text);
  const down = formatStatus({ ...base, coordination: { describe: 'etcd http://a:2379 /fb', error: 'etcd: read the marks: no answer within 2000 ms' } });
  t.true(down.endsWith('coordination: etcd http://a:2379 /fb\n  the store did not answer: etcd: read the marks: no answer within 2000 ms'), down);
});

test('the request log line names the requester, the request, the door, the decision, the outcome and the id', (t) => {
  const record: AuditRecord = {
    event: 'request', request_id: 'id-1', door: 'ssh', peer: '127.0.0.1:5', fingerprint: 'SHA256:k', cluster: 'web', node: 'web-1', admin: null, command: 'off web-2',
    action: 'off', target: 'web-2', decision: 'allow', reasons: [], policy: { revision: 'r', sha256: 's' }, result: null, code: 'ok', exit_code: 0, duration_ms: 12,
  };
  t.deepEqual(requestLine(record, 'ssh'), {
    message: 'request web/web-1 off web-2 via ssh: allow, ok (12 ms, request id-1)',
    fields: { request_id: 'id-1', door: 'ssh', requester: 'web/web-1', action: 'off', target: 'web-2', decision: 'allow', outcome: 'ok', duration_ms: 12 },
  });
  t.is(requestLine({ ...record, cluster: null, node: null, admin: 'ops', action: 'list', target: null }, 'ssh').message, 'request admin ops list via ssh: allow, ok (12 ms, request id-1)');
  t.is(requestLine({ ...record, action: null, target: null, decision: 'malformed', code: 'malformed' }, 'fence_virt').message, 'request web/web-1 malformed request via fence_virt: malformed, malformed (12 ms, request id-1)');
});
