// A broker killed at the worst moment (kill -9, as a crash would) and started
// again, as systemd's Restart=on-failure would, on the same config, host key,
// audit log and host (issue 17): the fence race's loser still loses, the storm
// limit still holds, a fence cut short is reported, no request is answered
// twice, and the audit log stays one JSON object per line. Local coordination
// lives in the process, so all of this rests on the replay of the audit log
// (broker/journal.ts). Everything goes through the real daemon and its SSH door.
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { makeDouble, type Double } from '../doubles.js';
import { newPublicKey, until } from '../helpers.js';
import { answerOf, connectAs, execOn, request } from '../ssh-client.js';
import { etcdMissing, startEtcd } from '../etcd-host.js';

const TENANCY = {
  blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-2': 'blue-2' } },
  green: { domains: ['green-1', 'green-2', 'green-3'], nodes: { 'green-1': 'green-1', 'green-2': 'green-2' }, extra: ['limits: { fences_per_window: 1, window: 60 }'] },
};
const SIM = { 'blue-1': 'running', 'blue-2': 'running', 'green-1': 'running', 'green-2': 'running', 'green-3': 'running' };

/** The whole audit log parses line by line (a torn line would throw), and no request was answered twice. */
function auditIsWhole(t: import('ava').ExecutionContext, d: Daemon): Record<string, unknown>[] {
  const text = readFileSync(join(d.dir, 'audit.jsonl'), 'utf8');
  t.true(text.endsWith('\n'));
  const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const ids = lines.filter((l) => l.event === 'request').map((l) => String(l.request_id));
  t.is(new Set(ids).size, ids.length, 'one outcome line per request');
  return lines;
}

/** After the restart: blue-2 (whose domain blue-1 fenced) has lost, may still read, and green's storm limit holds. */
async function loserStillLoses(t: import('ava').ExecutionContext, d: Daemon): Promise<void> {
  const back = await request(d, 'blue-2', 'off blue-1');
  t.like(back.reply, { ok: false, code: 'refused' });
  t.regex(String(back.reply.message), /fence_race_lost/);
  const refusal = d.audit().find((l) => l.request_id === back.reply.request_id);
  t.deepEqual((refusal?.reasons as { code: string }[] | undefined)?.map((r) => r.code), ['fence_race_lost']);
  t.is((await request(d, 'blue-2', 'status blue-2')).exitCode, 0, 'the loser may still read');
}

test('killed after a fence: the loser still loses and the storm limit still holds after the restart', async (t) => {
  // With metrics on: the coordination then runs wrapped, and must still take the replay back.
  const d = await startDaemon({ clusters: TENANCY, simDomains: SIM, extraBroker: ['  metrics: { listen: "127.0.0.1:0" }'] });
  let again: Daemon | undefined;
  try {
    t.like((await request(d, 'blue-1', 'off blue-2')).reply, { ok: true, state: 'off' });
    t.like((await request(d, 'green-1', 'off green-2')).reply, { ok: true, state: 'off' });
    await d.kill9();
    again = await d.restart();
    await loserStillLoses(t, again);
    t.is(again.sim()['blue-1'], 'running', 'the winner was not fenced');
    const storm = await request(again, 'green-1', 'off green-3');
    t.like(storm.reply, { ok: false, code: 'refused' });
    t.deepEqual((again.audit().find((l) => l.request_id === storm.reply.request_id)?.reasons as { code: string }[]).map((r) => r.code), ['fence_storm_limit']);
    t.is(again.sim()['green-3'], 'running');
    const lines = auditIsWhole(t, again);
    const replayed = lines.filter((l) => l.event === 'replay').at(-1);
    t.like(replayed, { marks: 2, storm_fences: 2, interrupted: 0, torn: 0 }, 'blue-2 and green-2');
    t.is(lines.filter((l) => l.event === 'interrupted').length, 0, 'nothing was cut short');
  } finally {
    await again?.stop();
  }
});

test('killed between the intent line and the destroy: the fence is reported as interrupted, its target stays marked', async (t) => {
  // TEST DOUBLE of virsh: the only way to stop a fence exactly between its
  // intent line and the hypervisor acting (hold-destroy). Real libvirt is
  // used for a slow destroy below.
  const fake: Double = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2', 'green-1', 'green-2', 'green-3']) fake.setDomain(dom, 'running (booted)');
  writeFileSync(join(fake.dir, 'hold-destroy'), '');
  const d = await startDaemon({ clusters: TENANCY, toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }` });
  let again: Daemon | undefined;
  try {
    const client = await connectAs(d, 'blue-1');
    const answer = answerOf(await execOn(client, 'off blue-2'));
    await until('the destroy was issued', () => fake.readFile('calls').includes('destroy blue-2'));
    const intent = d.auditAll().find((l) => l.event === 'intent');
    t.like(intent, { action: 'off', target: 'blue-2', node: 'blue-1' });
    await d.kill9();
    // The hypervisor never acts: the double's processes go with the broker.
    for (const pid of fake.readFile('pids').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    rmSync(join(fake.dir, 'hold-destroy'));
    t.is(await answer.then(() => 'answered', () => 'no answer'), 'no answer', 'the dead broker told the requester nothing');
    client.end();

    again = await d.restart();
    const lines = auditIsWhole(t, again);
    const interrupted = lines.filter((l) => l.event === 'interrupted');
    t.is(interrupted.length, 1);
    t.like(interrupted[0], { request_id: intent?.request_id, action: 'off', target: 'blue-2', cluster: 'blue', node: 'blue-1', fingerprint: intent?.fingerprint });
    t.regex(again.logTail(), /has no outcome: the broker stopped while it ran/);
    t.is(lines.filter((l) => l.event === 'request' && l.request_id === intent?.request_id).length, 0, 'no outcome was made up for it');
    await loserStillLoses(t, again);
    // A second restart reports nothing new, and the mark still holds.
    await again.kill9();
    again = await again.restart();
    t.is(auditIsWhole(t, again).filter((l) => l.event === 'interrupted').length, 1, 'reported once');
    await loserStillLoses(t, again);
  } finally {
    await again?.stop();
  }
});

test('killed during a slow destroy: the destroy lands after the crash; the restarted broker reports the fence and keeps the loser out', async (t) => {
  // TEST DOUBLE of virsh with a destroy that takes seconds and completes on
  // its own, as libvirt's does when the broker is gone: a real destroy cannot
  // be made slow on purpose here (a stopped QEMU is still destroyed in ~1 s).
  const fake: Double = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2']) fake.setDomain(dom, 'running (booted)');
  fake.setFile('destroy-delay', '3');
  const d = await startDaemon({ clusters: { blue: TENANCY.blue }, toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }` });
  let again: Daemon | undefined;
  try {
    const client = await connectAs(d, 'blue-1');
    const answer = answerOf(await execOn(client, 'off blue-2')).then(() => 'answered', () => 'no answer');
    await until('the destroy was issued', () => fake.readFile('calls').includes('destroy blue-2'));
    await d.kill9();
    t.is(await answer, 'no answer', 'the dead broker told the requester nothing');
    client.end();
    await until('the destroy landed after the crash', () => fake.readFile('domains/blue-2').startsWith('shut off'));
    rmSync(join(fake.dir, 'destroy-delay'));

    again = await d.restart();
    const lines = auditIsWhole(t, again);
    t.like(lines.find((l) => l.event === 'interrupted'), { action: 'off', target: 'blue-2', node: 'blue-1' });
    await loserStillLoses(t, again);
    t.true(fake.readFile('domains/blue-1').startsWith('running'), 'the winner survives');
  } finally {
    await again?.stop();
  }
});

test('killed during a reload: the restarted broker runs the new config, and the loser and the storm limit still hold', async (t) => {
  const d = await startDaemon({ clusters: TENANCY, simDomains: SIM });
  let again: Daemon | undefined;
  try {
    t.like((await request(d, 'blue-1', 'off blue-2')).reply, { ok: true });
    t.like((await request(d, 'green-1', 'off green-2')).reply, { ok: true });
    // A reload that adds a node: killed while the new config is being loaded.
    const config = readFileSync(d.config, 'utf8');
    writeFileSync(d.config, config.replace('      green-2: {', `      green-3: { key: "${newPublicKey('green-3')}", domain: green-3 }\n      green-2: {`));
    const reloading = d.waitLog(/reloading \(SIGHUP\)/);
    d.process.kill('SIGHUP');
    await reloading;
    await d.kill9();
    again = await d.restart();
    await loserStillLoses(t, again);
    const storm = await request(again, 'green-1', 'off green-3');
    t.like(storm.reply, { ok: false, code: 'refused' });
    t.is(again.sim()['green-3'], 'running');
    const lines = auditIsWhole(t, again);
    t.not(lines.filter((l) => l.event === 'start')[0]?.config_sha256, lines.filter((l) => l.event === 'start').at(-1)?.config_sha256, 'the restart loaded the edited config');
  } finally {
    await again?.stop();
  }
});

test('with etcd the marks live in the store: a broker killed after a fence and restarted honours them', async (t) => {
  const missing = await etcdMissing();
  if (missing) {
    if (process.env.CI) t.fail(missing);
    else t.log(`skipped: ${missing}`);
    if (!process.env.CI) t.pass();
    return;
  }
  const etcd = await startEtcd();
  const prefix = `/fb-crash-${process.pid}`;
  const d = await startDaemon({
    clusters: { blue: TENANCY.blue },
    simDomains: SIM,
    extraBroker: ['  host_id: host-a', '  coordination:', '    type: etcd', `    endpoints: [${etcd.endpoints.join(', ')}]`, `    prefix: ${prefix}`, '    timeout: 2'],
  });
  let again: Daemon | undefined;
  try {
    t.like((await request(d, 'blue-1', 'off blue-2')).reply, { ok: true });
    await d.kill9();
    again = await d.restart();
    t.like(auditIsWhole(t, again).filter((l) => l.event === 'replay').at(-1), { coordination: 'kept in the store' });
    await loserStillLoses(t, again);
  } finally {
    await again?.stop();
    await etcd.stop();
  }
});
