// fencectl reload against the real daemon: validate first, then SIGHUP the pid
// in broker.pid_file, then read the daemon's answer from the audit log (one
// reload event per attempt, old and new config sha256 and policy revision).
// A bad config or bundle is refused before anything is signalled; a bad file
// that reaches the daemon anyway is refused there and the last good one kept.
// Fencing goes on throughout, and a request in flight finishes under the
// decision it started with. The in-flight test holds a state read with the
// virsh TEST DOUBLE (test/doubles/fake-virsh), so events order everything.
import test from 'ava';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { makeDouble } from '../doubles.js';
import { cleanup, fenceBroker, fencectl, until } from '../helpers.js';

const DOMAINS = '    domains: [blue-1, blue-2, blue-3]';
const reloads = (d: Daemon) => d.auditAll().filter((l) => l.event === 'reload');
const edit = (d: Daemon, f: (yaml: string) => string) => writeFileSync(d.config, f(readFileSync(d.config, 'utf8')));

async function blue(toolstack?: string): Promise<Daemon> {
  return startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { n1: 'blue-1', n2: 'blue-2' } } },
    simDomains: { 'blue-1': 'on', 'blue-2': 'on', 'blue-3': 'on' },
    extraBroker: ['  pid_file: run/broker.pid'],
    ...(toolstack ? { toolstack } : {}),
  });
}

test('fencectl reload: a valid change is taken and audited old -> new; a bad config or bundle is refused before signalling; a bad file the daemon sees is refused there; fencing goes on', async (t) => {
  const d = await blue();
  const pidFile = join(d.dir, 'run', 'broker.pid');
  try {
    t.is(readFileSync(pidFile, 'utf8').trim(), String(d.pid), 'the daemon wrote its pid');

    // A real change: blue may no longer power on.
    edit(d, (y) => y.replace(DOMAINS, `${DOMAINS}\n    actions: [status, off, reset]`));
    const ok = await fencectl(['reload', '--config', d.config]);
    t.is(ok.exitCode, 0, ok.stderr);
    t.regex(ok.stdout, new RegExp(`^reloaded fence-broker pid ${d.pid}: policy rego-\\w+ -> rego-\\w+, config sha256 \\w{16} -> \\w{16}`));
    const [first] = reloads(d);
    t.like(first, { ok: true, pid: d.pid, connections_closed: 0 });
    const ev = first as { old: { config_sha256: string; policy: string }; new: { config_sha256: string; policy: string } };
    t.not(ev.old.config_sha256, ev.new.config_sha256, 'the config digest changed');
    t.is(ev.new.policy, ev.old.policy);
    t.is((await d.ssh('n1', 'on blue-2')).exitCode, 1, 'the new config decides from now on');

    // Invalid configs never reach the daemon.
    const good = readFileSync(d.config, 'utf8');
    edit(d, (y) => y.replace(DOMAINS, '    domains: [blue-1, "blue 2;reboot"]'));
    const bad = await fencectl(['reload', '--config', d.config]);
    t.is(bad.exitCode, 1);
    t.regex(bad.stderr, /clusters\.yaml:\d+:\d+: .*blue 2;reboot|clusters\.yaml:\d+:\d+:.*pattern/);
    t.regex(bad.stderr, /not valid; the daemon was not signalled/);

    writeFileSync(join(d.dir, 'bogus.tar.gz'), 'not a bundle');
    writeFileSync(d.config, good.replace('  audit_log: audit.jsonl', '  audit_log: audit.jsonl\n  policy_bundle: bogus.tar.gz'));
    const badBundle = await fencectl(['reload', '--config', d.config]);
    t.is(badBundle.exitCode, 1);
    t.regex(badBundle.stderr, /clusters\.yaml:\d+:\d+: policy: .*bogus\.tar\.gz/);
    t.is(reloads(d).length, 1, 'nothing was signalled for either');

    // The daemon refuses a bad file on its own too (a SIGHUP from elsewhere), and keeps the last good one.
    const refused = await d.reload(() => good.replace(DOMAINS, '    domains: [blue-1, blue-1]'));
    t.regex(String(refused.msg), /reload failed/);
    const last = reloads(d).at(-1);
    t.like(last, { ok: false, pid: d.pid, kept: { config_sha256: ev.new.config_sha256, policy: ev.new.policy } });
    t.regex(String(last?.error), /clusters\.yaml:\d+:\d+: clusters\.blue\.domains: duplicate entry/);

    // Fencing continued through all of it, under the last good config.
    t.is((await d.ssh('n1', 'off blue-3')).exitCode, 0);
    t.is(d.sim()['blue-3'], 'shut off');
    writeFileSync(d.config, good);

    // One daemon per pid file: a second one refuses to start.
    const second = await fenceBroker(['--config', d.config]);
    t.is(second.exitCode, 2);
    t.regex(second.stderr, new RegExp(`pid file .*broker\\.pid: fence-broker pid ${d.pid} is already running`));
  } finally {
    await d.stop();
  }
  t.false(existsSync(pidFile), 'the pid file is gone after a clean stop');
  const again = await fencectl(['reload', '--config', d.config]);
  t.is(again.exitCode, 1);
  t.regex(again.stderr, /no running fence-broker holds .*broker\.pid/);
});

test('fencectl reload: a request in flight finishes under the decision it started with; the next one is decided by the new config', async (t) => {
  const fake = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2', 'blue-3']) fake.setDomain(dom, 'running (booted)');
  const d = await blue(`{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`);
  const hold = join(fake.dir, 'hold');
  try {
    // n1's fence of blue-2 is admitted and held inside the toolstack.
    writeFileSync(hold, '');
    const inFlight = d.ssh('n1', 'off blue-2');
    await until('the fence of blue-2 is at the toolstack', () => fake.readFile('calls').includes('blue-2'));

    // blue loses every power action while it waits.
    edit(d, (y) => y.replace(DOMAINS, `${DOMAINS}\n    actions: [status]`));
    const r = await fencectl(['reload', '--config', d.config]);
    t.is(r.exitCode, 0, r.stderr);
    const next = await d.ssh('n1', 'off blue-3');
    t.is(next.exitCode, 1);
    t.regex(next.stdout, /action_not_enabled/);

    rmSync(hold);
    const done = await inFlight;
    t.is(done.exitCode, 0, done.stdout + done.stderr);
    t.regex(fake.readFile('domains/blue-2'), /^shut off/);
    const [fenced] = d.audit().filter((l) => l.target === 'blue-2');
    t.like(fenced, { decision: 'allow', code: 'ok', action: 'off' });
    t.is(d.audit().filter((l) => l.target === 'blue-3')[0]?.decision, 'deny');
  } finally {
    await cleanup(
      () => rmSync(hold, { force: true }),
      () => d.stop(),
    );
  }
});
