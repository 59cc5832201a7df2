// The metrics endpoint (broker/metrics.ts) of the real daemon, scraped over
// HTTP while requests come through its SSH door: the counters agree with the
// audit log, request for request; the queues, connections and a failed fence
// show up while a TEST DOUBLE of virsh holds a read; reloads, a dead etcd and a
// full audit disk are counted; a UNIX socket endpoint is 0660, survives a
// kill -9 and is removed on stop. The real promtool accepts every scrape and
// the alert rules in contrib/ (and runs their rule tests).
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { projectPath } from '../../common/paths.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { makeDouble } from '../doubles.js';
import { etcdMissing, startEtcd } from '../etcd-host.js';
import { cleanup, tempDir, until } from '../helpers.js';
import { answerOf, connectAs, execOn, request } from '../ssh-client.js';

const test = anyTest as TestFn;
const CI = process.env.CI === 'true';
const promtoolMissing = (await execa('sh', ['-c', 'command -v promtool'], { reject: false })).exitCode !== 0;
if (promtoolMissing && CI) throw new Error('CI needs promtool (scripts/system-setup.sh installs Debian\'s prometheus package)');
if (promtoolMissing) console.error('metrics: promtool checks skipped here: promtool is not installed (scripts/system-setup.sh installs prometheus)');
const etcd = await etcdMissing();
if (etcd && CI) throw new Error(`CI needs etcd: ${etcd}`);
const root = process.getuid?.() === 0;
if (!root && CI) throw new Error('CI runs as root: the full-disk test mounts a tmpfs');
const promtoolTest = (promtoolMissing ? anyTest.skip : anyTest) as TestFn;
const etcdTest = (etcd ? anyTest.skip : anyTest) as TestFn;
const rootTest = (root ? anyTest : anyTest.skip) as TestFn;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text-format scrape (comments skipped). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

const matches = (s: Sample, name: string, labels: Record<string, string>) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
/** The sum of the samples of `name` whose labels include `labels`. */
const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0);
/** Samples of `name` summed by some of their labels, zeros left out. */
const by = (samples: Sample[], name: string, keys: string[], labels: Record<string, string> = {}): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const s of samples.filter((x) => matches(x, name, labels) && x.value !== 0)) {
    const k = keys.map((key) => s.labels[key] ?? '').join('|');
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
};
const tally = (keys: string[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = (out[k] ?? 0) + 1;
  return out;
};

type Where = { port: number } | { socketPath: string };

function scrape(at: Where, path = '/metrics'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ ...('port' in at ? { host: '127.0.0.1', port: at.port } : { socketPath: at.socketPath }), path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}
const samplesAt = async (at: Where): Promise<Sample[]> => parse((await scrape(at)).body);

/** The metrics port, from the daemon's "metrics listening" line (printed before its ready line). */
const metricsPort = (d: Daemon): Where => {
  const port = Number(/"metrics":"127\.0\.0\.1:(\d+)"/.exec(d.logTail(1_000_000))?.[1]);
  if (!(port > 0)) throw new Error(`no metrics line in the daemon log: ${d.logTail()}`);
  return { port };
};

const METRICS_TCP = ['  metrics: { listen: "127.0.0.1:0" }'];

async function promtoolCheck(text: string): Promise<{ exitCode: number | undefined; output: string }> {
  const r = await execa('promtool', ['check', 'metrics'], { input: text, reject: false });
  return { exitCode: r.exitCode, output: `${String(r.stdout)}${String(r.stderr)}` };
}

const CLUSTERS = 4;
const NODES = 3;
const VMS = 3;
const ROUNDS = 28;
const STRANGERS = 5;

test(`under load (${CLUSTERS * NODES} nodes x ${ROUNDS} requests, an admin, ${STRANGERS} unknown keys): the counters agree with the audit log, and every scrape is valid`, async (t) => {
  const clusters: Parameters<typeof startDaemon>[0]['clusters'] = {};
  for (let c = 0; c < CLUSTERS; c++) {
    const nodes: Record<string, string> = {};
    for (let n = 0; n < NODES; n++) nodes[`c${c}-n${n}`] = `c${c}-n${n}`;
    clusters[`c${c}`] = { domains: [...Object.keys(nodes), ...Array.from({ length: VMS }, (_, v) => `c${c}-vm${v}`)], nodes };
  }
  const d = await startDaemon({ clusters, admins: ['ops'], extraBroker: METRICS_TCP });
  const at = metricsPort(d);
  try {
    // A scraper runs all along, paced so it does not starve the daemon of the 2 cores.
    let loading = true;
    const scrapes: string[] = [];
    const scraper = (async () => {
      do {
        const r = await scrape(at);
        t.is(r.status, 200);
        scrapes.push(r.body);
        await pause(50);
      } while (loading);
    })();

    const errors: string[] = [];
    const verbs = (c: number, i: number, n: number): string =>
      [`status c${c}-vm${i % VMS}`, `off c${c}-vm${(i + n) % VMS}`, `on c${c}-vm${(i + n) % VMS}`, `off c${(c + 1) % CLUSTERS}-vm0`, 'bogus verb', 'list', `reset c${c}-vm${n % VMS}`][(i + n) % 7] as string;
    const node = async (c: number, n: number, address: string) => {
      for (let i = 0; i < ROUNDS; i++) {
        const command = verbs(c, i, n);
        try {
          const conn = await connectAs(d, `c${c}-n${n}`, { localAddress: address });
          try {
            await answerOf(await execOn(conn, command));
          } finally {
            conn.end();
          }
        } catch (err) {
          errors.push(`${command}: ${(err as Error).message}`);
        }
      }
    };
    writeFileSync(d.key('stranger'), generateEd25519('stranger').private, { mode: 0o600 });
    const strangers = async () => {
      for (let i = 0; i < STRANGERS; i++) await t.throwsAsync(connectAs(d, 'stranger', { localAddress: '127.0.2.1' }));
    };
    const admin = async () => {
      for (const command of ['list', 'status c0-vm0', 'status c1-vm1', 'off nowhere']) t.not((await request(d, 'ops', command)).exitCode, undefined);
    };
    const work: Promise<void>[] = [strangers(), admin()];
    for (let c = 0; c < CLUSTERS; c++) for (let n = 0; n < NODES; n++) work.push(node(c, n, `127.0.1.${c * NODES + n + 1}`));
    await Promise.all(work);
    loading = false;
    await scraper;
    t.deepEqual(errors.slice(0, 3), [], `${errors.length} requests failed on the way`);

    const final = await scrape(at);
    t.regex(final.type, /^text\/plain; version=0\.0\.4/);
    const samples = parse(final.body);
    const audit = d.audit();
    const requests = CLUSTERS * NODES * ROUNDS + 4;
    t.is(audit.length, requests);

    // The same number of requests by decision, and by every label the counter has.
    t.deepEqual(by(samples, 'fence_broker_requests_total', ['decision']), tally(audit.map((l) => String(l.decision))));
    t.deepEqual(
      by(samples, 'fence_broker_requests_total', ['door', 'cluster', 'action', 'decision', 'code']),
      tally(audit.map((l) => ['ssh', l.cluster ?? '', l.action ?? '', l.decision, l.code].join('|'))),
    );
    t.deepEqual(Object.keys(by(samples, 'fence_broker_requests_total', ['decision'])).sort(), ['allow', 'deny', 'malformed'], 'the load had every kind of answer');
    // Toolstack actions: one observation per request that reached the fencer (its audit line has steps).
    const fenced = audit.filter((l) => l.decision === 'allow' && (l.result as { steps?: unknown } | null)?.steps !== undefined);
    t.deepEqual(by(samples, 'fence_broker_fence_duration_seconds_count', ['toolstack', 'action']), tally(fenced.map((l) => `sim|${String(l.action)}`)));
    t.is(value(samples, 'fence_broker_refusals_total', { kind: 'auth_unknown_key' }), STRANGERS, 'every refusal counted, also those the audit rate-limits');
    t.true(d.auditAll().filter((l) => l.event === 'refusal' && l.kind === 'auth_unknown_key').length < STRANGERS, 'the audit log rate-limited them');
    // Nothing left in progress once every reply is in.
    for (const name of ['fence_broker_requests_in_progress', 'fence_broker_requests_in_progress_max_per_identity', 'fence_broker_domain_queue_depth', 'fence_broker_domain_queue_depth_max']) t.is(value(samples, name), 0, name);
    t.is(value(samples, 'fence_broker_coordination_up', { type: 'local' }), 1);
    t.true(value(samples, 'process_start_time_seconds') > 0);
    // No node keys nor domain names in any label: only what an admin counts by.
    const labelValues = new Set(samples.flatMap((s) => Object.values(s.labels)));
    t.false([...labelValues].some((v) => /SHA256:|-vm\d|-n\d/.test(v)), [...labelValues].join(' '));

    // Counters never go back between scrapes taken under load.
    t.true(scrapes.length >= 2, `${scrapes.length} scrapes`);
    let previous = new Map<string, number>();
    for (const body of [...scrapes, final.body]) {
      const now = new Map(parse(body).filter((s) => /^fence_broker_.*(_total|_count|_bucket)$/.test(s.name)).map((s) => [`${s.name}${JSON.stringify(s.labels)}`, s.value]));
      for (const [k, v] of previous) t.true((now.get(k) ?? -1) >= v, `${k} went from ${v} to ${now.get(k)}`);
      previous = now;
    }
    t.log(`${requests} requests, ${scrapes.length} scrapes under load; requests by decision ${JSON.stringify(by(samples, 'fence_broker_requests_total', ['decision']))}`);

    if (promtoolMissing) return;
    for (const body of [scrapes[Math.floor(scrapes.length / 2)] as string, final.body]) {
      const r = await promtoolCheck(body);
      t.is(r.exitCode, 0, r.output);
      t.is(r.output, '', 'no lint complaints');
    }
  } finally {
    await d.stop();
  }
});

test('queues, connections and a failed fence, while a TEST DOUBLE of virsh holds a read and then lies about a destroy', async (t) => {
  const fake = makeDouble('fake-virsh');
  for (const dom of ['blue-1', 'blue-2']) fake.setDomain(dom, 'running (booted)');
  // Each destroy "succeeds" but the domain keeps running (read once, when the virsh session starts).
  fake.setFile('mode', 'lie');
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1', 'blue-3': 'blue-2' } } },
    toolstack: `{ type: virsh, uri: "test:///fake", command: "${fake.command}" }`,
    // verify: the bound whose firing is the failed fence.
    extraBroker: [...METRICS_TCP, '  timeouts: { verify: 1 }'],
  });
  const at = metricsPort(d);
  try {
    let s = await samplesAt(at);
    t.is(value(s, 'fence_broker_fence_duration_seconds_count', { toolstack: 'virsh', action: 'off', outcome: 'failed' }), 0, 'the series the alert watches exists at 0');
    t.true(s.some((x) => matches(x, 'fence_broker_fence_duration_seconds_count', { toolstack: 'virsh', action: 'off', outcome: 'failed' })));

    writeFileSync(join(fake.dir, 'hold'), '');
    const reader = await connectAs(d, 'blue-3');
    const status = answerOf(await execOn(reader, 'status blue-2'));
    const fencer = await connectAs(d, 'blue-1');
    const off = answerOf(await execOn(fencer, 'off blue-2'));
    await until('the fence queued behind the held read', () => value(s, 'fence_broker_domain_queue_depth', { kind: 'power' }) === 1, 60_000, async () => {
      s = await samplesAt(at);
    });
    t.is(value(s, 'fence_broker_domain_queue_depth', { kind: 'read' }), 1);
    t.is(value(s, 'fence_broker_domain_queue_depth_max', { kind: 'power' }), 1);
    t.is(value(s, 'fence_broker_requests_in_progress'), 2);
    t.is(value(s, 'fence_broker_requests_in_progress_max_per_identity'), 1);
    t.is(value(s, 'fence_broker_connections', { state: 'authenticated' }), 2);

    // Released: the read answers; the fence's destroy lies, so it is not confirmed off.
    rmSync(join(fake.dir, 'hold'));
    t.like((await status).reply, { ok: true });
    t.like((await off).reply, { ok: false, code: 'failed' });
    reader.end();
    fencer.end();
    s = await samplesAt(at);
    t.is(value(s, 'fence_broker_fence_duration_seconds_count', { toolstack: 'virsh', action: 'off', outcome: 'failed' }), 1);
    t.true(value(s, 'fence_broker_fence_duration_seconds_sum', { toolstack: 'virsh', action: 'off', outcome: 'failed' }) >= 1, 'at least the verify bound');
    t.is(value(s, 'fence_broker_fence_duration_seconds_count', { toolstack: 'virsh', action: 'status', outcome: 'ok' }), 1);
    t.is(value(s, 'fence_broker_requests_total', { door: 'ssh', cluster: 'blue', action: 'off', decision: 'allow', code: 'failed' }), 1);
    for (const name of ['fence_broker_domain_queue_depth', 'fence_broker_requests_in_progress']) t.is(value(s, name), 0, name);
    await until('both connections closed', () => value(s, 'fence_broker_connections') === 0, 60_000, async () => {
      s = await samplesAt(at);
    });
    t.pass();
  } finally {
    await d.stop();
  }
});

test('a UNIX socket endpoint: 0660, policy and reloads counted, replaced after a kill -9, refused while in use or over another file, removed on stop', async (t) => {
  const socketPath = join(tempDir('fb-msock-'), 'metrics.sock');
  const tenant = { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } };
  const opts = { clusters: tenant, extraBroker: [`  metrics: { listen: ${socketPath} }`] };
  const at = { socketPath };
  let d: Daemon | undefined = await startDaemon(opts);
  let d2: Daemon | undefined;
  try {
    const st = statSync(socketPath);
    t.true(st.isSocket());
    t.is((st.mode & 0o777).toString(8), '660');
    t.is(st.uid, process.getuid?.() ?? -1, "owned by the daemon's user");
    const revision = /"policy":"(rego-[0-9a-f]+)".*fence-broker ready/.exec(d.logTail(1_000_000))?.[1];
    let s = await samplesAt(at);
    t.is(value(s, 'fence_broker_policy_info', { revision: String(revision) }), 1);
    t.is(value(s, 'fence_broker_config_last_reload_successful'), 1);
    t.deepEqual(by(s, 'fence_broker_reloads_total', ['result']), {});
    t.is((await scrape(at, '/')).status, 404);

    const good = readFileSync(d.config, 'utf8');
    t.like(await d.reload((y) => `${y}tenants: {}\n`), { msg: 'reload failed; keeping the running config and policy' });
    s = await samplesAt(at);
    t.deepEqual(by(s, 'fence_broker_reloads_total', ['result']), { failed: 1 });
    t.is(value(s, 'fence_broker_config_last_reload_successful'), 0);
    t.like(await d.reload(() => good), { msg: 'reloaded' });
    s = await samplesAt(at);
    t.deepEqual(by(s, 'fence_broker_reloads_total', ['result']), { failed: 1, ok: 1 });
    t.is(value(s, 'fence_broker_config_last_reload_successful'), 1);
    t.is(value(s, 'fence_broker_policy_info'), 1, 'one policy running');

    // A crash leaves the socket behind; the next start replaces it.
    d.process.kill('SIGKILL');
    await d.process;
    d = undefined;
    t.true(existsSync(socketPath), 'kill -9 left the socket');
    d2 = await startDaemon(opts);
    t.is((await scrape(at)).status, 200);
    const third = await t.throwsAsync(startDaemon(opts));
    t.regex(String(third?.message), /daemon exited 2: .*refusing to start: metrics: .*metrics\.sock is in use by a running process/s);
    await d2.stop();
    d2 = undefined;
    t.false(existsSync(socketPath), 'removed on stop');

    writeFileSync(socketPath, 'not a socket\n', { mode: 0o600 });
    const over = await t.throwsAsync(startDaemon(opts));
    t.regex(String(over?.message), /daemon exited 2: .*metrics\.sock: is not a socket/s);
  } finally {
    await cleanup(() => d?.stop(), () => d2?.stop());
  }
});

etcdTest('coordination health: etcd answering, then dead: up goes to 0, the failed step is counted, the fence is refused', async (t) => {
  const cluster = await startEtcd();
  let d: Daemon | undefined;
  try {
    d = await startDaemon({
      clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } },
      extraBroker: [...METRICS_TCP, '  coordination:', '    type: etcd', `    endpoints: [${cluster.endpoints.join(', ')}]`, `    prefix: /fb-metrics-${process.pid}`, '    timeout: 2'],
    });
    const at = metricsPort(d);
    let s: Sample[] = [];
    // The fleet publishing asks the store at once.
    await until('etcd answered', () => value(s, 'fence_broker_coordination_up', { type: 'etcd' }) === 1, 60_000, async () => {
      s = await samplesAt(at);
    });
    await cluster.stop();
    const r = await request(d, 'blue-1', 'off blue-2');
    t.like(r.reply, { ok: false, code: 'coordination_unavailable' });
    s = await samplesAt(at);
    t.is(value(s, 'fence_broker_coordination_up', { type: 'etcd' }), 0);
    t.is(value(s, 'fence_broker_coordination_errors_total', { type: 'etcd', step: 'facts' }), 1);
    t.true(value(s, 'fence_broker_coordination_last_error_timestamp_seconds', { type: 'etcd' }) > 0);
    t.is(value(s, 'fence_broker_requests_total', { cluster: 'blue', action: 'off', decision: 'error', code: 'coordination_unavailable' }), 1);
  } finally {
    await cleanup(() => d?.stop(), () => cluster.stop());
  }
});

rootTest('audit write failures are counted by record (a full tmpfs): intent, request, refusal', async (t) => {
  const dir = tempDir('fb-mfull-');
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', dir]);
  let d: Daemon | undefined;
  try {
    d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } }, auditLog: join(dir, 'audit.jsonl'), extraBroker: METRICS_TCP });
    const at = metricsPort(d);
    // Fill it, the audit log's last page included.
    await execa('dd', ['if=/dev/zero', `of=${join(dir, 'fill')}`, 'bs=4k'], { reject: false });
    await execa('bash', ['-c', `while printf '\\n' >> "$1"; do :; done 2>/dev/null`, '_', join(dir, 'audit.jsonl')], { reject: false });
    t.like((await request(d, 'blue-1', 'off blue-2')).reply, { ok: false, code: 'failed' });
    writeFileSync(d.key('stranger'), generateEd25519('stranger').private, { mode: 0o600 });
    await t.throwsAsync(connectAs(d, 'stranger'));
    const s = await samplesAt(at);
    t.deepEqual(by(s, 'fence_broker_audit_write_failures_total', ['record']), { intent: 1, request: 1, refusal: 1 });
    t.is(value(s, 'fence_broker_requests_total', { action: 'off', code: 'failed' }), 1, 'counted though its audit line is missing');
  } finally {
    await cleanup(() => d?.stop(), () => execa('umount', [dir], { reject: false }));
  }
});

promtoolTest('promtool accepts the alert rules, their rule tests pass, and every metric they name is exported', async (t) => {
  const rules = projectPath('contrib', 'fence-broker.rules.yml');
  const check = await execa('promtool', ['check', 'rules', rules], { reject: false });
  t.is(check.exitCode, 0, `${String(check.stdout)}${String(check.stderr)}`);
  t.regex(String(check.stdout), /SUCCESS: 6 rules found/);
  const unit = await execa('promtool', ['test', 'rules', projectPath('test', 'broker', 'metrics-rules.test.yml')], { reject: false });
  t.is(unit.exitCode, 0, `${String(unit.stdout)}${String(unit.stderr)}`);

  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } }, extraBroker: METRICS_TCP });
  try {
    const exported = new Set(parse((await scrape(metricsPort(d))).body).map((s) => s.name));
    const named = new Set([...readFileSync(rules, 'utf8').matchAll(/\b(fence_broker_[a-z_]+|process_start_time_seconds)\b/g)].map((m) => m[1] as string));
    t.true(named.size >= 5);
    t.deepEqual([...named].filter((n) => !exported.has(n)), [], 'names in the rules that the daemon does not export');
  } finally {
    await d.stop();
  }
});
