// list / gethosts prove the device works (docs/design.md §3.4): the broker answers
// them from the toolstack — the caller's domains this host really has, with
// their states, in one request — and a hypervisor that does not answer fails
// them, so the plugin's monitor fails too. Through the real daemon on the sim.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../plugin/fencing.js';
import { startDaemon } from '../broker-daemon.js';
import { request } from '../ssh-client.js';

test('list and gethosts: only the caller\'s domains this host has, with states; a dead hypervisor fails them and the monitor', async (t) => {
  const d = await startDaemon({
    clusters: {
      blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { 'blue-1': 'blue-1' } },
      red: { domains: ['red-1'], nodes: { 'red-a': 'red-1' } },
    },
    admins: ['ops'],
    // blue-3 is owned by blue but lives on another host.
    simDomains: { 'blue-1': 'running', 'blue-2': 'shut off', 'red-1': 'running', 'stray-vm': 'running' },
  });
  try {
    const list = await request(d, 'blue-1', 'list');
    t.is(list.exitCode, 0);
    t.like(list.reply, { ok: true, code: 'ok', domains: ['blue-1', 'blue-2'], states: { 'blue-1': 'on', 'blue-2': 'off' } });
    t.deepEqual((await request(d, 'blue-1', 'gethosts')).reply.domains, ['blue-1', 'blue-2']);
    t.deepEqual((await request(d, 'ops', 'list')).reply.domains, ['blue-1', 'blue-2', 'red-1'], 'an admin sees every owned domain the host has, never an unowned one');

    // The plugin's own code, as the monitor runs it: works while the hypervisor answers.
    const hostPub = d.fingerprint;
    const o = { brokers: [{ host: '127.0.0.1', port: d.port }], user: 'fence', identityFile: d.key('blue-1'), hostKeyFingerprints: [hostPub], loginTimeoutMs: 30_000, timeoutMs: 30_000 };
    const ok = await run(o, 'list');
    t.true(ok.ok);
    t.deepEqual(ok.states, { 'blue-1': 'on', 'blue-2': 'off' });

    // The hypervisor stops answering (the sim's state is unreadable).
    writeFileSync(join(d.dir, 'sim.json'), '{ this is not json');
    const dead = await request(d, 'blue-1', 'list');
    t.is(dead.exitCode, 1);
    t.like(dead.reply, { ok: false, code: 'failed' });
    t.regex(String(dead.reply.message), /the hypervisor did not answer/);
    t.is((await request(d, 'blue-1', 'gethosts')).exitCode, 1);
    const monitor = await run(o, 'list');
    t.false(monitor.ok, 'the monitor fails when a broker cannot show its hypervisor answering');
  } finally {
    await d.stop();
  }
});
