#!/usr/bin/env node
// fence-broker --config FILE: the host daemon. It refuses to start unless the
// config and the policy are valid (docs/design.md §3.2). SIGHUP reloads clusters.yaml
// and the policy (a bad reload keeps the running ones); SIGTERM/SIGINT stop it.
import './heap.js'; // first: V8's heap policy, before anything allocates much
import pino from 'pino';
import pretty from 'pino-pretty';
import { fileAudit, type Audit } from './audit.js';
import { Broker } from './broker.js';
import { configDigest, coordinationFor, startPublishing } from './coordination/index.js';
import { ConfigError } from './config/errors.js';
import type { Config } from './config/load.js';
import { answerConfigLoad, loadConfigIsolated } from './config/isolated.js';
import { fileURLToPath } from 'node:url';
import { Fencer } from './fencer.js';
import { Metrics } from './metrics.js';
import { loadOrCreateHostKey, startFrontDoor } from './doors/ssh.js';
import { IdentityIndex } from './identity/index.js';
import type { PolicyEngine } from './policy/engine.js';
import { loadPolicy } from './policy/load.js';
import { POLICIES_DIR, sourceRevision } from './policy/bundle.js';
import { existsSync } from 'node:fs';
import { toolstackFor } from './toolstack/index.js';
import { removePidFile, writePidFile } from './pidfile.js';
import { readAuditTail, replay } from './journal.js';
import type { Coordination } from './coordination/index.js';
import { systemdNotifier } from './systemd.js';
import { asksHelp, commandHelp, parseCommand, tryHelp, type CommandSpec } from './admin/cli.js';
import { FENCE_BROKER, versionText } from './admin/commands.js';
import { serveStatus, type StatusServer } from './status.js';
import { requestLine } from './request-log.js';
import { loadFenceVirtKeys, startFenceVirt } from './doors/fence-virt/index.js';
import { startMulticastDoor, type MulticastDoor } from './doors/fence-virt/multicast.js';

/**
 * The foreground log: JSON lines (journald, a collector) or plain text for a
 * person (the default on a terminal); ISO times in both, as in the audit log.
 * Synchronous: a line is on stderr before the next step, and none is lost if the process dies.
 */
const logger = (format: 'text' | 'json') =>
  pino(
    { base: { svc: 'fence-broker' }, timestamp: pino.stdTimeFunctions.isoTime },
    format === 'text' ? pretty({ destination: 2, sync: true, colorize: false, translateTime: false, ignore: 'pid,hostname,svc', singleLine: true }) : pino.destination({ dest: 2, sync: true }),
  );
let log = logger('json');

/** Where the daemon's memory is, MiB: for the ready line, so a large tenancy's cost is visible. */
const memoryMiB = (): Record<string, number> =>
  Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, Math.round(v / 1048576)]));

async function load(file: string): Promise<{ config: Config; engine: PolicyEngine; identities: IdentityIndex; fenceVirtKeys: ReturnType<typeof loadFenceVirtKeys> }> {
  // In a worker: the parse's garbage leaves with it (config/isolated.ts).
  const config = await loadConfigIsolated(fileURLToPath(import.meta.url), file);
  const engine = await loadPolicy(config);
  // The fence_virt keys are re-read with the config: a key file removed is revoked by this reload.
  return { config, engine, identities: new IdentityIndex(config), fenceVirtKeys: loadFenceVirtKeys(config) };
}

/**
 * The daemon never builds policy: with the project's default bundle, a Rego
 * edit takes effect only after `npm run build:policy`. Say so when they differ.
 */
function warnIfStale(config: Config, loaded: string): void {
  if (config.broker.policyBundle || !existsSync(POLICIES_DIR)) return;
  const sources = sourceRevision();
  if (sources !== loaded) log.warn({ loaded, sources }, 'policies/ differ from the loaded bundle; run `npm run build:policy`, then reload');
}

/**
 * The audit log as the journal (journal.ts): fences cut short by the last
 * process's death are reported, and local coordination takes back its race
 * marks and storm counts. A failure here is logged, never fatal: the broker
 * then knows less, as before this existed, and says so.
 */
function recover(config: Config, audit: Audit, coordination: Coordination): void {
  const stormWindows = Object.values(config.clusters).map((c) => c.limits?.windowMs ?? 0);
  // An outcome may come up to a request's deadline after its intent.
  const lookbackMs = Math.max(config.broker.timeouts.fenceRaceMs, ...stormWindows) + config.broker.timeouts.requestMs + 5_000;
  try {
    const now = Date.now();
    const tail = readAuditTail(config.broker.auditLog, lookbackMs, now);
    const found = replay(tail.lines, now);
    coordination.restore?.({
      marks: found.marks,
      fences: found.fences,
      raceWindowMs: config.broker.timeouts.fenceRaceMs,
      stormWindowMs: (cluster) => config.clusters[cluster]?.limits?.windowMs,
    }, now);
    for (const i of found.interrupted) {
      const message = `${i.action} ${i.target} by ${i.cluster ?? '?'}/${i.node ?? '?'} (request ${i.request_id}, intent at ${i.intent_time}) has no outcome: the broker stopped while it ran; the domain may be off`;
      log.warn({ interrupted: i }, message);
      audit.event('interrupted', { ...i, message });
    }
    for (const t of tail.torn) log.warn({ torn: t }, `audit log: skipped a line that is not JSON at ${t.file}:${t.offset} (a write cut short)`);
    const summary = { files: tail.files, bytes: tail.bytes, lines: tail.lines.length, lookback_s: Math.round(lookbackMs / 1000), marks: found.marks.length, storm_fences: found.fences.length, interrupted: found.interrupted.length, torn: tail.torn.length, torn_first: tail.torn.slice(0, 5) };
    audit.event('replay', { ...summary, coordination: coordination.restore ? 'restored' : 'kept in the store' });
    log.info(summary, 'audit log replayed');
  } catch (err) {
    log.error({ err }, 'audit log replay failed: race marks and storm counts of before the start are not known');
  }
}

async function main(): Promise<number> {
  // Stop handlers first: until a listener exists, SIGTERM's default action kills
  // the process outright. `on`, not `once`: execa's signal-exit re-raises a
  // signal that has no other listener left, killing the daemon mid-shutdown.
  let stopRequested!: () => void;
  const stopping = new Promise<void>((resolve) => (stopRequested = resolve));
  process.on('SIGTERM', () => stopRequested());
  process.on('SIGINT', () => stopRequested());
  // Likewise SIGHUP (logrotate, an admin's reload) during start-up: remembered,
  // acted on once the broker is up, never fatal.
  let reload: () => void = () => (reloadPending = true);
  let reloadPending = false;
  process.on('SIGHUP', () => reload());
  // Under a Type=notify unit (NOTIFY_SOCKET set); otherwise it does nothing.
  const notify = systemdNotifier((err) => log.warn({ err }, err.message));
  // The option table (admin/commands.ts) gives parsing, --help and fence-broker(8).
  const table = FENCE_BROKER.commands[0] as CommandSpec;
  const args = process.argv.slice(2);
  if (asksHelp(args)) {
    process.stdout.write(commandHelp('fence-broker', table));
    return 0;
  }
  let configPath: string;
  let logFormat: string | undefined;
  try {
    const values = parseCommand(table, args);
    if (values.version) {
      process.stdout.write(versionText('fence-broker'));
      return 0;
    }
    configPath = String(values.config);
    logFormat = typeof values['log-format'] === 'string' ? values['log-format'] : undefined;
  } catch (e) {
    process.stderr.write(`fence-broker: ${(e as Error).message}\n${tryHelp('fence-broker')}\n`);
    return 2;
  }
  log = logger((logFormat as 'text' | 'json' | undefined) ?? (process.stderr.isTTY ? 'text' : 'json'));
  const startedAt = new Date();
  let state: Awaited<ReturnType<typeof load>>;
  /** When the running config was loaded (start, or the last good reload), for fencectl status. */
  let loadedAt = startedAt;
  let hostKey: ReturnType<typeof loadOrCreateHostKey>;
  try {
    state = await load(configPath);
    loadedAt = new Date();
    hostKey = loadOrCreateHostKey(state.config.broker.hostKey);
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
    process.stderr.write(e instanceof ConfigError ? `${e.message}\nfence-broker: refusing to start: invalid config\n` : `fence-broker: refusing to start: ${(e as Error).message}${cause}\n`);
    return 2;
  }
  const { config } = state;
  // Metrics (off unless configured): served from here on, so a listener that
  // cannot be had refuses the start; the parts made below report to it.
  const metrics = config.broker.metrics ? new Metrics({ toolstack: config.broker.toolstack.type, coordination: config.broker.coordination.type }, (err) => log.error({ err }, err.message)) : undefined;
  if (metrics && config.broker.metrics) {
    try {
      log.info({ metrics: await metrics.listen(config.broker.metrics.listen) }, 'metrics listening');
    } catch (e) {
      process.stderr.write(`fence-broker: refusing to start: ${(e as Error).message}\n`);
      return 2;
    }
  }
  const toolstack = toolstackFor(config);
  // The audit log must take a flushed line before anything is served: no fence without a record.
  let audit: Audit;
  try {
    audit = fileAudit(config.broker.auditLog, (err) => {
      metrics?.auditFailed('refusal');
      log.error({ err }, 'audit write failed');
    });
    if (metrics) audit = metrics.watchAudit(audit);
    audit.event('start', { pid: process.pid, policy: state.engine.revision, policy_sha256: state.engine.sha256, config: config.file, config_sha256: config.sha256 });
  } catch (e) {
    log.error({ err: e }, 'cannot write the audit log');
    process.stderr.write(`fence-broker: refusing to start: audit log ${config.broker.auditLog} cannot be appended to: ${(e as Error).message}\n`);
    return 2;
  }
  // Claimed before serving: a second daemon on the same pid file refuses to start.
  const pidFile = config.broker.pidFile;
  if (pidFile) {
    try {
      writePidFile(pidFile);
    } catch (e) {
      process.stderr.write(`fence-broker: refusing to start: ${(e as Error).message}\n`);
      audit.event('stop', { pid: process.pid, error: (e as Error).message });
      audit.close();
      return 2;
    }
  }
  const store = await coordinationFor(config);
  const coordination = metrics ? metrics.watchCoordination(store) : store;
  recover(config, audit, coordination);
  const fencer = new Fencer(toolstack, {
      verifyMs: config.broker.timeouts.verifyMs,
      pollMs: 100,
      queue: { maxReads: config.broker.limits.maxReadsPerDomain, maxPower: config.broker.limits.maxPowerPerDomain },
      observer: metrics?.fencer,
  });
  const broker = new Broker({
    policy: () => state.engine,
    fencer,
    audit,
    coordination,
    raceWindowMs: config.broker.timeouts.fenceRaceMs,
    storm: (cluster) => {
      const l = state.config.clusters[cluster]?.limits;
      return l ? { windowMs: l.windowMs, fences: l.fencesPerWindow } : undefined;
    },
    requestTimeoutMs: config.broker.timeouts.requestMs,
    maxQueuePerIdentity: config.broker.limits.maxQueuePerIdentity,
    reportError: (err) => log.error({ err }, err.message),
    observer: metrics?.broker,
    // One line per request, naming it; the audit log stays the record.
    outcome: (record, door) => {
      const line = requestLine(record, door);
      log.info(line.fields, line.message);
    },
  });
  const door = await startFrontDoor({
    host: config.broker.listen.host,
    port: config.broker.listen.port,
    hostKey: hostKey.key,
    identities: () => state.identities,
    limits: config.broker.limits,
    handle: (who, peer, command, ctx) => broker.handle(who, peer, command, ctx),
    refused: (r) => audit.refusal(r),
    log,
  });
  let fenceVirt: Awaited<ReturnType<typeof startFenceVirt>>;
  let multicast: MulticastDoor | undefined;
  try {
    fenceVirt = await startFenceVirt({ config, keys: () => state.fenceVirtKeys, broker, fencer, audit, log, current: () => state.config });
    // fence_xvm's multicast listener shares the door (its keys, replay history and allowances) with TCP.
    const mc = config.broker.fenceVirt?.multicast;
    if (fenceVirt && mc) {
      multicast = await startMulticastDoor({
        door: fenceVirt.door, groups: mc.groups, port: mc.port, interface: mc.interface, maxCallbacks: mc.maxCallbacks, connectTimeoutMs: mc.connectTimeoutMs,
        // What the policy lists for the requester's cluster: any other domain gets no answer, like one no host has.
        visible: (a) => {
          const d = state.engine.decide({ requester: { cluster: a.cluster, node: a.node }, action: 'list' });
          return d.allow && (d.domains ?? []).includes(a.request.domain);
        },
        audit: (r) => audit.refusedRequest(r),
        log,
      });
    }
  } catch (e) {
    log.error({ err: e }, 'fence_virt door cannot start');
    process.stderr.write(`fence-broker: refusing to start: ${(e as Error).message}\n`);
    await fenceVirt?.close();
    await door.close();
    audit.event('stop', { pid: process.pid, error: (e as Error).message });
    audit.close();
    if (pidFile) removePidFile(pidFile);
    return 2;
  }
  metrics?.read({ policy: () => state.engine, inProgress: () => broker.inProgressCounts(), queues: () => fencer.queueDepths(), connections: () => door.counts() });
  let status: StatusServer | undefined;
  try {
    status = await serveStatus(config.broker.statusSocket, {
      startedAt,
      config: () => ({ file: state.config.file, sha256: state.config.sha256, tenancy: configDigest(state.config), loadedAt }),
      policy: () => ({ revision: state.engine.revision, sha256: state.engine.sha256 }),
      hostKey: hostKey.fingerprint,
      hostId: config.broker.hostId,
      toolstack: toolstack.describe,
      // Every door reports itself: where it listens, its connections by state.
      doors: () => [door.report(), ...(fenceVirt?.report() ?? [])],
      requestsInProgress: () => broker.inProgressCounts().requests,
      inFlight: () => broker.inFlight(),
      coordination,
    }, (err) => log.error({ err }, err.message));
  } catch (e) {
    // A diagnostic, not worth refusing to fence over: said, and the daemon serves without it.
    log.warn({ err: e }, `fencectl status will not answer: ${(e as Error).message}`);
  }
  const auditReload = (fields: Record<string, unknown>): void => {
    metrics?.reloaded(fields.ok === true);
    try {
      audit.event('reload', fields);
    } catch (e) {
      log.error({ err: e }, 'audit log: reload event not written');
    }
  };
  reload = () => {
    log.info('reloading (SIGHUP)');
    // logrotate: the old file was moved away; appends go to a new one from now on.
    try {
      audit.reopen();
    } catch (e) {
      log.error({ err: e }, 'audit log reopen failed; still writing to the previous file');
    }
    // Every reload attempt leaves one audit event naming what ran before and
    // after (or why nothing changed). Requests already running keep the engine
    // they started with: Broker.handle reads it once, at arrival.
    notify.reloading();
    const before = { config_sha256: state.config.sha256, policy: state.engine.revision, policy_sha256: state.engine.sha256 };
    load(configPath)
      .then((next) => {
        // The policy bundle and its key are reloaded; every other broker setting needs a restart.
        // fence_virt's channels are reloaded too (their discovery restarts).
        const settings = (c: Config) => ({ ...c.broker, policyBundle: undefined, policyVerificationKey: undefined, fenceVirt: c.broker.fenceVirt && { ...c.broker.fenceVirt, channels: undefined } });
        const restartOnly = JSON.stringify(settings(next.config)) !== JSON.stringify(settings(config));
        if (restartOnly) log.warn('broker settings changed; they take effect on restart (clusters, keys and policy are reloaded now)');
        state = next;
        loadedAt = new Date();
        warnIfStale(next.config, next.engine.revision);
        // In the same tick as the swap: no request on a revoked key can start in between.
        const revoked = door.revoke() + (fenceVirt?.door.revoke() ?? 0);
        fenceVirt?.reload(next.config).catch((e: unknown) => log.error({ err: e }, `fence_virt/serial: channels not restarted after the reload: ${(e as Error).message}`));
        const after = { config_sha256: next.config.sha256, policy: next.engine.revision, policy_sha256: next.engine.sha256 };
        auditReload({ ok: true, pid: process.pid, old: before, new: after, connections_closed: revoked, ...(restartOnly ? { broker_settings_need_restart: true } : {}) });
        log.info({ policy: next.engine.revision, connections_closed: revoked, memory_mib: memoryMiB() }, 'reloaded');
        notify.ready(`reloaded; policy ${next.engine.revision}`);
      })
      .catch((e: unknown) => {
        const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
        auditReload({ ok: false, pid: process.pid, error: `${e instanceof Error ? e.message : String(e)}${cause}`, kept: before });
        log.error({ err: e }, 'reload failed; keeping the running config and policy');
        notify.ready(`reload failed, running the previous config: ${e instanceof Error ? e.message : String(e)}`);
      });
  };
  // The fleet view (etcd only; one host alone has no fleet): what this host
  // runs, under which tenancy and policy.
  const stopPublishing = config.broker.coordination.type === 'local' ? () => undefined : startPublishing(
    coordination,
    async () => {
      const all = Object.values(state.config.clusters).flatMap((c) => c.domains);
      const listed = await fencer.list(all);
      return {
        host_id: config.broker.hostId,
        listen: `${config.broker.listen.host}:${door.port}`,
        config_digest: configDigest(state.config),
        policy_revision: state.engine.revision,
        domains: listed.ok ? Object.fromEntries(listed.domains.map((d) => [d, listed.states[d] ?? 'unknown'])) : {},
        at: new Date().toISOString(),
      };
    },
    5_000,
    (err) => log.warn({ err }, 'fleet: could not publish this host'),
  );
  warnIfStale(state.config, state.engine.revision);
  log.info(
    { listen: `${config.broker.listen.host}:${door.port}`, status_socket: status?.path ?? null, ...(fenceVirt ? { fence_virt: { ...fenceVirt.describe(), ...(multicast ? { multicast: multicast.groups.map((g) => (g.includes(':') ? `[${g}]:${multicast?.port}` : `${g}:${multicast?.port}`)) } : {}) } } : {}), memory_mib: memoryMiB(), host_key: hostKey.fingerprint, host_key_created: hostKey.created, toolstack: toolstack.describe, policy: state.engine.revision, audit_log: config.broker.auditLog, host_id: config.broker.hostId, coordination: coordination.describe },
    'fence-broker ready',
  );
  notify.ready(`serving on ${config.broker.listen.host}:${door.port}; policy ${state.engine.revision}`);
  if (reloadPending) reload();
  await stopping;
  const notified = notify.stopping();
  stopPublishing();
  await status?.close();
  await door.close();
  await multicast?.close();
  await fenceVirt?.close();
  await metrics?.close();
  toolstack.close?.();
  await coordination.close().catch((e: unknown) => log.warn({ err: e }, 'coordination: close failed'));
  try {
    audit.event('stop', { pid: process.pid });
    audit.close();
  } catch (e) {
    log.error({ err: e }, 'audit log: stop line not written');
  }
  if (pidFile) removePidFile(pidFile);
  await notified;
  log.info('stopped');
  return 0;
}

// Started by loadConfigIsolated as its worker: answer and end; otherwise, serve.
if (!answerConfigLoad()) {
  process.exitCode = await main();
  // Everything of ours is closed. A library may still hold a retry timer (the
  // etcd client, when the store lost quorum): it must not keep a stopped broker
  // alive, so leave once it has had a moment; unref'd, this timer holds nothing.
  setTimeout(() => {
    log.warn('exiting with library handles still open');
    process.exit();
  }, 2_000).unref();
}
