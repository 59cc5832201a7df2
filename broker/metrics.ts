// The Prometheus metrics (README, "Metrics"): prom-client's text format on a
// listener of its own — loopback TCP or a UNIX socket (0660), never an
// address guests reach (the config refuses others) — off unless configured.
// Only this module knows prom-client: the broker, the fencer and the door
// report through small observer interfaces or are read at scrape time, and the
// audit and the coordination store are watched by wrapping them. Labels carry
// what an admin counts by — door, cluster, action, decision, code, kind — never
// node keys or domain names (cardinality, and tenants' privacy).
import { createServer, type Server } from 'node:http';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Audit } from './audit.js';
import type { BrokerObserver } from './broker.js';
import type { Coordination } from './coordination/coordination.js';
import type { MetricsListen } from './config/types.js';
import type { FencerObserver, FenceResult } from './fencer.js';

/** What is read at scrape time: queue depths, connections, the policy running. */
export interface MetricsSources {
  policy: () => { revision: string; sha256: string };
  inProgress: () => { requests: number; maxOfOne: number };
  queues: () => { domains: number; reads: number; power: number; maxReads: number; maxPower: number };
  connections: () => { unauthenticated: number; authenticated: number };
}

const P = 'fence_broker_';
/** Fences take from tens of ms (sim) to the request deadline (40 s by default). */
const FENCE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 60];

const outcomeOf = (r: FenceResult): string => (r.ok ? 'ok' : r.busy ? 'busy' : r.dropped ? 'dropped' : r.notFound ? 'not_found' : 'failed');

export class Metrics {
  readonly registry = new Registry();
  private sources: MetricsSources | undefined;
  private server: Server | undefined;

  private readonly requests = new Counter({ name: `${P}requests_total`, help: 'Requests answered, by door, cluster (empty for admins), action (empty when malformed), decision and reply code; one per audit outcome line.', labelNames: ['door', 'cluster', 'action', 'decision', 'code'], registers: [this.registry] });
  private readonly fences = new Histogram({ name: `${P}fence_duration_seconds`, help: 'Toolstack actions (status, on, off, reset) from queueing to verified result, by toolstack, action and outcome (ok, failed, not_found, busy, dropped).', labelNames: ['toolstack', 'action', 'outcome'], buckets: FENCE_BUCKETS, registers: [this.registry] });
  private readonly refusals = new Counter({ name: `${P}refusals_total`, help: 'Refusals before a request existed (authentication, channels, slots), by audit refusal kind; every one, including those the audit log rate-limits.', labelNames: ['kind'], registers: [this.registry] });
  private readonly reloads = new Counter({ name: `${P}reloads_total`, help: 'Reloads (SIGHUP) by result: ok, or failed (the running config and policy were kept).', labelNames: ['result'], registers: [this.registry] });
  private readonly reloadOk = new Gauge({ name: `${P}config_last_reload_successful`, help: '1 if the last reload (or the start) took effect, 0 if it was refused.', registers: [this.registry] });
  private readonly reloadOkAt = new Gauge({ name: `${P}config_last_reload_success_timestamp_seconds`, help: 'When the running config and policy were last loaded (start or successful reload), Unix seconds.', registers: [this.registry] });
  private readonly coordUp = new Gauge({ name: `${P}coordination_up`, help: '1 if the last call to the coordination store was answered, 0 if it failed (local: always 1).', labelNames: ['type'], registers: [this.registry] });
  private readonly coordErrors = new Counter({ name: `${P}coordination_errors_total`, help: 'Coordination store calls that failed (no answer in time, or an error), by store type and step (facts, claim, finish, publish, fleet).', labelNames: ['type', 'step'], registers: [this.registry] });
  private readonly coordErrorAt = new Gauge({ name: `${P}coordination_last_error_timestamp_seconds`, help: 'When a coordination store call last failed, Unix seconds.', labelNames: ['type'], registers: [this.registry] });
  private readonly auditFailures = new Counter({ name: `${P}audit_write_failures_total`, help: 'Audit log writes that failed, by record (request, intent, refusal, event, reopen).', labelNames: ['record'], registers: [this.registry] });

  constructor(
    private readonly labels: { toolstack: string; coordination: string },
    private readonly onError: (err: Error) => void = () => undefined,
  ) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client's sums of the labelled nodejs_active_* gauges end in _total,
    // which the format keeps for counters (promtool check metrics refuses them);
    // the labelled gauges stay.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    // local cannot fail; etcd says once it was asked (the fleet publishing asks every 5 s).
    if (labels.coordination === 'local') this.coordUp.set({ type: 'local' }, 1);
    // The series the alert rules (contrib/fence-broker.rules.yml) watch exist
    // from the start, at 0: a counter born at 1 would show no increase.
    for (const action of ['off', 'reset']) for (const outcome of ['failed', 'dropped']) this.fences.zero({ toolstack: labels.toolstack, action, outcome });
    for (const result of ['ok', 'failed']) this.reloads.inc({ result }, 0);
    for (const record of ['request', 'intent', 'refusal', 'event', 'reopen']) this.auditFailures.inc({ record }, 0);
    this.reloadOk.set(1);
    this.reloadOkAt.setToCurrentTime();
    // Read at scrape time (an arrow: `this` is the Metrics; inside collect() it is the gauge).
    const read = <T>(f: (s: MetricsSources) => T): T | undefined => (this.sources ? f(this.sources) : undefined);
    new Gauge({ name: `${P}policy_info`, help: 'The policy running: revision and sha256 of its bundle (value 1).', labelNames: ['revision', 'sha256'], registers: [this.registry], collect() {
      this.reset();
      const p = read((s) => s.policy());
      if (p) this.set({ revision: p.revision, sha256: p.sha256 }, 1);
    } });
    new Gauge({ name: `${P}requests_in_progress`, help: 'Allowed requests in the fencer (waiting or running), all identities together.', registers: [this.registry], collect() {
      this.set(read((s) => s.inProgress().requests) ?? 0);
    } });
    new Gauge({ name: `${P}requests_in_progress_max_per_identity`, help: 'The most requests in progress of any one identity (bound: limits.max_queue_per_identity).', registers: [this.registry], collect() {
      this.set(read((s) => s.inProgress().maxOfOne) ?? 0);
    } });
    new Gauge({ name: `${P}domain_queue_depth`, help: 'Toolstack work waiting or running in the per-domain queues, all domains together, by kind (read, power).', labelNames: ['kind'], registers: [this.registry], collect() {
      const q = read((s) => s.queues());
      this.set({ kind: 'read' }, q?.reads ?? 0);
      this.set({ kind: 'power' }, q?.power ?? 0);
    } });
    new Gauge({ name: `${P}domain_queue_depth_max`, help: 'The deepest per-domain queue, by kind (bounds: limits.max_reads_per_domain, max_power_per_domain).', labelNames: ['kind'], registers: [this.registry], collect() {
      const q = read((s) => s.queues());
      this.set({ kind: 'read' }, q?.maxReads ?? 0);
      this.set({ kind: 'power' }, q?.maxPower ?? 0);
    } });
    new Gauge({ name: `${P}connections`, help: 'Front door connections by state (unauthenticated, authenticated).', labelNames: ['state'], registers: [this.registry], collect() {
      const c = read((s) => s.connections());
      this.set({ state: 'unauthenticated' }, c?.unauthenticated ?? 0);
      this.set({ state: 'authenticated' }, c?.authenticated ?? 0);
    } });
  }

  /** A metrics update must never change a request's course: failures go to the log. */
  private safe(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.onError(new Error('metrics: update failed', { cause: err }));
    }
  }

  /** For the Broker: one count per request. */
  readonly broker: BrokerObserver = {
    request: (r) => this.safe(() => this.requests.inc({ door: r.door, cluster: r.cluster ?? '', action: r.action ?? '', decision: r.decision, code: r.code })),
  };

  /** For the Fencer: every toolstack action's duration and outcome. */
  readonly fencer: FencerObserver = {
    done: (r) => this.safe(() => this.fences.observe({ toolstack: this.labels.toolstack, action: r.action, outcome: outcomeOf(r) }, r.durationMs / 1000)),
  };

  /** What the gauges read at scrape time, once the broker, fencer and door exist. */
  read(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** A reload's result; the policy revision is read from the running state at scrape time. */
  reloaded(ok: boolean): void {
    this.safe(() => {
      this.reloads.inc({ result: ok ? 'ok' : 'failed' });
      this.reloadOk.set(ok ? 1 : 0);
      if (ok) this.reloadOkAt.setToCurrentTime();
    });
  }

  /** A failed audit write the audit reports itself (refusals: it never throws). */
  auditFailed(record: string): void {
    this.safe(() => this.auditFailures.inc({ record }));
  }

  /** The audit, counting refusals by kind and every write that throws. */
  watchAudit(audit: Audit): Audit {
    const counted = <A extends unknown[]>(record: string, f: (...a: A) => void) => (...a: A): void => {
      try {
        f(...a);
      } catch (err) {
        this.auditFailed(record);
        throw err;
      }
    };
    return {
      intent: counted('intent', (r) => audit.intent(r)),
      write: counted('request', (r) => audit.write(r)),
      refusal: (r) => {
        this.safe(() => this.refusals.inc({ kind: r.kind }));
        audit.refusal(r);
      },
      refusedRequest: (r) => {
        this.safe(() => this.refusals.inc({ kind: r.kind }));
        audit.refusedRequest(r);
      },
      event: counted('event', (name, fields) => audit.event(name, fields)),
      reopen: counted('reopen', () => audit.reopen()),
      close: () => audit.close(),
    };
  }

  /** The coordination store, with whether each call was answered. */
  watchCoordination(c: Coordination): Coordination {
    const type = this.labels.coordination;
    const answered = async <T>(step: string, p: () => Promise<T>): Promise<T> => {
      try {
        const v = await p();
        this.safe(() => this.coordUp.set({ type }, 1));
        return v;
      } catch (err) {
        this.safe(() => {
          this.coordUp.set({ type }, 0);
          this.coordErrors.inc({ type, step });
          this.coordErrorAt.setToCurrentTime({ type });
        });
        throw err;
      }
    };
    return {
      describe: c.describe,
      facts: (q) => answered('facts', () => c.facts(q)),
      claim: (cl) => answered('claim', () => c.claim(cl)),
      finish: (cl, fenced) => answered('finish', () => c.finish(cl, fenced)),
      publish: (info) => answered('publish', () => c.publish(info)),
      fleet: () => answered('fleet', () => c.fleet()),
      snapshot: () => answered('snapshot', () => c.snapshot()),
      close: () => c.close(),
      // Not a store call: the audit log's replay at start (journal.ts), for local coordination.
      ...(c.restore ? { restore: c.restore.bind(c) } : {}),
    };
  }

  /** The text format, as served. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Serves GET /metrics on `at`; resolves with where (host:port, the port the
   * kernel chose for 0, or the socket path). A stale socket of a previous run
   * is replaced; a socket something answers on, or any other file, is not.
   */
  async listen(at: MetricsListen): Promise<string> {
    const server = createServer((req, res) => {
      if ((req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; the metrics are at /metrics\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : body),
        (err: unknown) => {
          this.onError(new Error('metrics: collecting failed', { cause: err }));
          res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting the metrics failed; see the broker log\n');
        },
      );
    });
    // Local scrapers only: a few connections, each bounded in time.
    server.maxConnections = 16;
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    if ('path' in at) await removeStaleSocket(at.path);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`metrics: cannot listen on ${'path' in at ? at.path : `${at.host}:${at.port}`}: ${err.message}`, { cause: err })));
      if ('path' in at) {
        // Created without group/other access, so no one else can connect before the chmod.
        const umask = process.umask(0o177);
        try {
          server.listen(at.path, resolve);
        } finally {
          process.umask(umask);
        }
      } else server.listen(at.port, at.host, resolve);
    });
    // An open metrics listener alone must not keep a stopping daemon alive.
    server.unref();
    this.server = server;
    if ('path' in at) {
      chmodSync(at.path, 0o660);
      return at.path;
    }
    const addr = server.address() as { address: string; port: number };
    return `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  }

  /** Stops serving; a UNIX socket is removed. */
  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

/** A socket file left by a daemon that died (kill -9) is removed; anything else there is refused. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new Error(`metrics: ${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`metrics: ${path} is in use by a running process (another broker?)`);
  unlinkSync(path);
}
