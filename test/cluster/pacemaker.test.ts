// Real Pacemaker + corosync driving fence_broker on its own initiative (one
// node, test/cluster/pacemaker-host.ts), against the real daemon on real QEMU
// domains: the stonith resource starts and its recurring monitor reaches the
// broker; stonith_admin reboots, fences and unfences an own domain, each
// confirmed by libvirt; another tenant's domain is refused and keeps running;
// with the broker frozen the fence fails, and it works again once it is back.
import anyTest, { type TestFn } from 'ava';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { createDomain, domid, domstate, libvirtMissing, removeDomain, sweepStale } from '../libvirt-host.js';
import { cleanup, until } from '../helpers.js';
import { pacemakerMissing, startPacemakerNode, type PacemakerNode } from './pacemaker-host.js';

const missing = (await pacemakerMissing()) ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs Pacemaker, corosync and libvirt: ${missing}`);
if (missing) console.error(`pacemaker tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let d: Daemon;
let node: PacemakerNode;
let own = '';
let foreign = '';
const created: string[] = [];

anyTest.before(async () => {
  if (missing) return;
  await sweepStale();
  own = await createDomain('pcmk-own', true, (n) => created.push(n));
  foreign = await createDomain('pcmk-foreign', true, (n) => created.push(n));
  d = await startDaemon({
    clusters: {
      blue: { domains: ['fbt-node1', own], nodes: { node1: 'fbt-node1' } },
      red: { domains: [foreign], nodes: { 'red-a': foreign } },
    },
    toolstack: '{ type: virsh, uri: "qemu:///system" }',
  });
  node = await startPacemakerNode('node1');
});

anyTest.after.always(async () => {
  if (missing) return;
  await cleanup(() => node?.stop(), () => d?.stop(), () => Promise.all(created.map(removeDomain)));
});

/** stonith_admin with a fencer-side timeout (seconds) under the test's own bound. */
const stonithAdmin = (args: string[], timeoutS = 120) => node.run(['stonith_admin', ...args, '--timeout', String(timeoutS)], (timeoutS + 60) * 1000);
const lists = () => d.audit().filter((l) => l.node === 'node1' && l.action === 'list').length;

test('a stonith:fence_broker resource starts and its recurring monitor reaches the broker', async (t) => {
  const attrs: Record<string, string> = {
    ip: `127.0.0.1:${d.port}`,
    identity_file: d.key('node1'),
    host_key_fingerprint: d.fingerprint,
    login_timeout: '10',
    pcmk_host_list: `${own} ${foreign}`,
    pcmk_host_check: 'static-list',
  };
  const nvpairs = Object.entries(attrs).map(([k, v]) => `<nvpair id="fb-${k}" name="${k}" value="${v}"/>`).join('');
  const xml = `<primitive id="fb" class="stonith" type="fence_broker"><instance_attributes id="fb-ia">${nvpairs}</instance_attributes><operations><op id="fb-monitor" name="monitor" interval="5s" timeout="60s"/></operations></primitive>`;
  const add = await node.run(['cibadmin', '--create', '--scope', 'resources', '--xml-text', xml]);
  t.is(add.exitCode, 0, add.stderr);
  await node.waitFor('fb started', (x) => /<resource id="fb" resource_agent="stonith:fence_broker" role="Started" active="true"/.test(x));
  const before = lists();
  await until('two more monitors reach the broker', () => lists() >= before + 2, 120_000);
  t.pass(`monitor lists seen: ${lists()}`);
});

test('stonith_admin --reboot, --fence and --unfence of an own domain succeed, and libvirt confirms each', async (t) => {
  const id0 = await domid(own);
  const reboot = await stonithAdmin(['--reboot', own]);
  t.is(reboot.exitCode, 0, reboot.stderr + reboot.stdout);
  t.is(await domstate(own), 'running');
  t.not(await domid(own), id0, 'a new domain id: it was really reset');

  const off = await stonithAdmin(['--fence', own]);
  t.is(off.exitCode, 0, off.stderr + off.stdout);
  t.is(await domstate(own), 'shut off');

  const on = await stonithAdmin(['--unfence', own]);
  t.is(on.exitCode, 0, on.stderr + on.stdout);
  t.is(await domstate(own), 'running');
  t.like(d.audit().filter((l) => l.target === own).map((l) => `${String(l.action)} ${String(l.decision)}`), ['reset allow', 'off allow', 'on allow']);
});

test('stonith_admin --list, --list-targets, --query, --validate and --history behave', async (t) => {
  const list = await stonithAdmin(['--list', own]);
  t.is(list.exitCode, 0, list.stderr);
  t.regex(list.stdout, /\bfb\b/);
  const targets = await stonithAdmin(['--list-targets', 'fb']);
  t.is(targets.exitCode, 0, targets.stderr);
  t.regex(targets.stdout, new RegExp(own));
  // --query runs the device's monitor: the broker must show its hypervisor answering.
  const before = lists();
  const query = await stonithAdmin(['--query', 'fb']);
  t.is(query.exitCode, 0, query.stderr);
  t.true(lists() > before, 'the query reached the broker');
  const good = ['--option', `ip=127.0.0.1:${d.port}`, '--option', `identity_file=${d.key('node1')}`, '--option', `host_key_fingerprint=${d.fingerprint}`];
  const valid = await stonithAdmin(['--validate', '--agent', 'fence_broker', ...good]);
  t.is(valid.exitCode, 0, valid.stdout + valid.stderr);
  const invalid = await stonithAdmin(['--validate', '--agent', 'fence_broker', '--option', `ip=127.0.0.1:${d.port}`, '--option', 'identity_file=/nonexistent', '--option', `host_key_fingerprint=${d.fingerprint}`]);
  t.not(invalid.exitCode, 0, 'a missing key file does not validate');
  const history = await stonithAdmin(['--history', own]);
  t.is(history.exitCode, 0, history.stderr);
  t.regex(history.stdout, /reboot|off|on/);
});

test('fencing another tenant\'s domain is reported by Pacemaker as failed, and the domain keeps running', async (t) => {
  const r = await stonithAdmin(['--fence', foreign]);
  t.not(r.exitCode, 0, r.stdout);
  t.is(await domstate(foreign), 'running');
  t.true(d.audit().some((l) => l.target === foreign && l.decision === 'deny'), 'the broker refused it');
});

test('with the broker frozen the fence and the device check fail; when it is back, both work again', async (t) => {
  process.kill(d.pid, 'SIGSTOP');
  try {
    // Short fencer timeouts: the bound firing (a broker that does not answer) is the point.
    const query = await stonithAdmin(['--query', 'fb'], 30);
    t.not(query.exitCode, 0, 'the monitor fails: the broker cannot show its hypervisor answering');
    const r = await stonithAdmin(['--fence', own], 30);
    t.not(r.exitCode, 0);
    t.is(await domstate(own), 'running');
  } finally {
    process.kill(d.pid, 'SIGCONT');
  }
  t.is((await stonithAdmin(['--query', 'fb'])).exitCode, 0, 'the device checks out again');
  const again = await stonithAdmin(['--fence', own]);
  t.is(again.exitCode, 0, again.stderr);
  t.is(await domstate(own), 'shut off');
});

test('a stonith:external/fence-broker resource (cluster-glue face through fence_legacy) starts, is monitored, and fences', async (t) => {
  t.is((await node.run(['cibadmin', '--delete', '--xml-text', '<primitive id="fb"/>'])).exitCode, 0);
  const attrs: Record<string, string> = {
    ip: `127.0.0.1:${d.port}`,
    identity_file: d.key('node1'),
    host_key_fingerprint: d.fingerprint,
    login_timeout: '10',
    pcmk_host_list: own,
    pcmk_host_check: 'static-list',
  };
  const nvpairs = Object.entries(attrs).map(([k, v]) => `<nvpair id="fbx-${k}" name="${k}" value="${v}"/>`).join('');
  const xml = `<primitive id="fbx" class="stonith" type="external/fence-broker"><instance_attributes id="fbx-ia">${nvpairs}</instance_attributes><operations><op id="fbx-monitor" name="monitor" interval="5s" timeout="60s"/></operations></primitive>`;
  const add = await node.run(['cibadmin', '--create', '--scope', 'resources', '--xml-text', xml]);
  t.is(add.exitCode, 0, add.stderr);
  await node.waitFor('fbx started', (x) => /<resource id="fbx" resource_agent="stonith:external\/fence-broker" role="Started"/.test(x));
  const before = d.audit().filter((l) => l.node === 'node1' && l.action === 'gethosts').length;
  await until('the monitor reaches the broker', () => d.audit().filter((l) => l.node === 'node1' && l.action === 'gethosts').length >= before + 2, 120_000);
  const on = await stonithAdmin(['--unfence', own]);
  t.is(on.exitCode, 0, on.stderr + on.stdout);
  t.is(await domstate(own), 'running');
  const off = await stonithAdmin(['--fence', own]);
  t.is(off.exitCode, 0, off.stderr + off.stdout);
  t.is(await domstate(own), 'shut off');
});
