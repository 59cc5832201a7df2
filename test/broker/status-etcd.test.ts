// fencectl status with coordination: etcd (a real three-member etcd from
// Debian's packages, test/etcd-host.ts): the race marks and storm counts are
// the fleet's, read from the store, so a broker shows the mark another host's
// broker made; with the store gone, status still answers and says the store
// did not.
import anyTest, { type TestFn } from 'ava';
import { startDaemon } from '../broker-daemon.js';
import { etcdMissing, startEtcd } from '../etcd-host.js';
import { fencectl } from '../helpers.js';
import type { StatusReport } from '../../broker/status.js';

const missing = await etcdMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs etcd: ${missing}`);
if (missing) console.error(`status with etcd skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

test('status shows the fleet\'s race marks and storm counts from etcd, and says so when the store does not answer', async (t) => {
  const etcd = await startEtcd();
  const coordination = [`  coordination: { type: etcd, endpoints: [${etcd.endpoints.join(', ')}], prefix: /fb-status-test, timeout: 2 }`];
  const clusters = { web: { domains: ['web-1', 'web-2'], nodes: { 'web-1': 'web-1', 'web-2': 'web-2' }, extra: ['limits: { fences_per_window: 2, window: 600 }'] } };
  const a = await startDaemon({ clusters, simDomains: { 'web-2': 'running' }, extraBroker: ['  host_id: host-a', ...coordination] });
  const b = await startDaemon({ clusters, simDomains: { 'web-1': 'running' }, extraBroker: ['  host_id: host-b', ...coordination], reuseKeys: { 'web-1': a.key('web-1'), 'web-2': a.key('web-2') } });
  try {
    t.is((await a.ssh('web-1', 'off web-2')).exitCode, 0);
    const id = String(a.audit().at(-1)?.request_id);
    // Asked at host B, which did not fence: the store's mark, made by host A.
    const r = await fencectl(['status', '--config', b.config, '--json']);
    t.is(r.exitCode, 0, String(r.stderr));
    const s = JSON.parse(String(r.stdout)) as StatusReport;
    t.is(s.host_id, 'host-b');
    t.regex(s.coordination.describe, /^etcd /);
    t.deepEqual(s.coordination, {
      describe: s.coordination.describe,
      marks: [{ target: 'web-2', holder: 'web/web-1', requestId: id, hostId: 'host-a', at: (s.coordination as { marks: { at: string }[] }).marks[0]?.at }],
      storms: [{ cluster: 'web', domains: ['web-2'] }],
    });
    const text = await fencectl(['status', '--config', b.config]);
    t.true(String(text.stdout).includes('web-2 marked by web/web-1, since '), String(text.stdout));
    t.true(String(text.stdout).includes('(host host-a)'));
    t.true(String(text.stdout).includes('storm counts: web 1'));

    await etcd.stop();
    const down = await fencectl(['status', '--config', b.config]);
    t.is(down.exitCode, 0, 'the daemon answers without its store');
    t.regex(String(down.stdout), /coordination: etcd .*\n {2}the store did not answer: etcd: read the marks: /);
    t.regex(String(down.stdout), new RegExp(`^fence-broker pid ${b.pid}, up `));
  } finally {
    await etcd.stop().catch(() => undefined);
    await a.stop();
    await b.stop();
  }
});
