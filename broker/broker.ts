// One request, top to bottom: (identity, already proven by the front door) →
// grammar → decision (Rego) → fencer → toolstack → reply, and exactly one
// audit line whatever happens. Every request has a deadline; it and the
// transport's "client gone" signal stop it before it reaches the toolstack.
// Transport-independent: the SSH front door and tests call handle() alike.
import { randomUUID } from 'node:crypto';
import { exitStatusOf, type ExitStatus, type ReplyCode, type WireReply } from '../common/wire.js';
import { parseRequest } from '../common/request.js';
import type { Audit, AuditRecord } from './audit.js';
import { CoordinationUnavailable, type Claim, type Coordination, type FenceEnd, type RaceFacts } from './coordination/coordination.js';
import type { FenceResult, Fencer } from './fencer.js';
import type { Identity } from './identity/index.js';
import { reason, reasonText, type DecisionInput, type PolicyEngine, type Reason } from './policy/engine.js';

/** The JSON line a client gets back (docs/design.md §10, common/reply.ts). */
export type Reply = WireReply;

export interface Handled {
  reply: Reply;
  /** 0 success, 1 failure, refused or busy, 2 malformed. */
  exitCode: ExitStatus;
}

/** What the transport knows about the request beyond its text. */
export interface RequestContext {
  /** Fires when the client goes away (channel or connection closed). */
  gone?: AbortSignal;
  /** Which door it came through ("ssh"); each door names itself, for the metrics. */
  door?: string;
  /** The hypervisor channel that proved the identity (fence_virt/serial): named in the audit lines. */
  channel?: { path: string; domain: string };
}

/** What a watcher (the metrics) hears about requests: no tenant secrets, only what an admin counts by. */
export interface BrokerObserver {
  /** One per request, with its audit line's outcome; `cluster` is null for admins. */
  request(r: { door: string; cluster: string | null; action: string | null; decision: AuditRecord['decision']; code: string; durationMs: number }): void;
}

/** Reasons that would tell a tenant whether someone else's domain exists. */
const HIDDEN: ReadonlySet<string> = new Set(['target_unknown', 'target_not_owned']);

export interface BrokerDeps {
  /** The current policy (swapped on reload). */
  policy: () => PolicyEngine;
  fencer: Fencer;
  audit: Audit;
  /** The fence race and the storm count: this host only, or the fleet's store. */
  coordination: Coordination;
  /** timeouts.fence_race */
  raceWindowMs: number;
  /** Storm limits by cluster (clusters.<c>.limits): at most `fences` distinct domains per `windowMs`. */
  storm?: (cluster: string) => { windowMs: number; fences: number } | undefined;
  /** From arrival to reply, ms (timeouts.request). */
  requestTimeoutMs: number;
  /** Requests of one identity waiting or running (limits.max_queue_per_identity). */
  maxQueuePerIdentity: number;
  /** Where errors nobody else will see go (the daemon log). */
  reportError?: (err: Error) => void;
  observer?: BrokerObserver;
  /** Hears every request's outcome, as audited (the daemon's one log line per request). */
  outcome?: (record: AuditRecord, door: string) => void;
}

/** A power action past its intent line and not yet answered (fencectl status). */
export interface InFlight {
  request_id: string;
  door: string;
  cluster: string | null;
  node: string | null;
  admin: string | null;
  action: string;
  target: string;
  /** When the toolstack was asked (ISO). */
  since: string;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const reply = (base: { action: string; target: string; request_id: string }, code: ReplyCode, fields: Partial<Reply> & { message: string }): Handled => ({
  reply: { ...base, ok: code === 'ok', state: 'unknown', code, ...fields },
  exitCode: exitStatusOf(code),
});

export class Broker {
  /** Requests in progress per identity (key fingerprint). */
  private readonly inProgress = new Map<string, number>();
  /** Power actions at the toolstack now, by request id. */
  private readonly running = new Map<string, InFlight>();

  constructor(private readonly deps: BrokerDeps) {}

  /** Requests in progress: in all, and the most of one identity (its bound: maxQueuePerIdentity). */
  inProgressCounts(): { requests: number; maxOfOne: number } {
    let requests = 0;
    let maxOfOne = 0;
    for (const n of this.inProgress.values()) {
      requests += n;
      maxOfOne = Math.max(maxOfOne, n);
    }
    return { requests, maxOfOne };
  }

  /** Power actions at the toolstack now, oldest first. */
  inFlight(): InFlight[] {
    return [...this.running.values()];
  }

  async handle(who: Identity, peer: string, command: string, ctx: RequestContext = {}): Promise<Handled> {
    const t0 = performance.now();
    const engine = this.deps.policy();
    const id = randomUUID();
    // The deadline starts at arrival; the client leaving ends the request too.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`request deadline of ${this.deps.requestTimeoutMs} ms passed`)), this.deps.requestTimeoutMs);
    const gone = ctx.gone;
    const signal = gone ? AbortSignal.any([deadline.signal, gone]) : deadline.signal;
    const record: AuditRecord = {
      event: 'request',
      request_id: id,
      door: ctx.door ?? 'unknown',
      peer,
      fingerprint: who.fingerprint,
      ...(ctx.channel ? { channel: ctx.channel.path, channel_domain: ctx.channel.domain } : {}),
      cluster: who.kind === 'node' ? who.cluster : null,
      node: who.kind === 'node' ? who.node : null,
      admin: who.kind === 'admin' ? who.admin : null,
      command: command.length > 200 ? `${command.slice(0, 200)}…` : command,
      action: null,
      target: null,
      decision: 'error',
      reasons: [],
      policy: { revision: engine.revision, sha256: engine.sha256 },
      result: null,
      code: 'failed',
      exit_code: 1,
      duration_ms: 0,
    };
    let out: Handled;
    try {
      out = await this.decideAndAct(who, command, engine, record, id, signal, ctx.door ?? 'unknown');
    } catch (err) {
      record.decision = record.decision === 'allow' ? 'allow' : 'error';
      record.reasons.push(reason('internal_error', errorText(err)));
      out = reply({ action: record.action ?? '', target: record.target ?? '', request_id: id }, 'failed', { message: 'internal error; see the broker log' });
    } finally {
      clearTimeout(timer);
      record.duration_ms = Math.round(performance.now() - t0);
    }
    record.code = out.reply.code;
    record.exit_code = out.exitCode;
    if (gone?.aborted) record.client_gone = true;
    try {
      this.deps.audit.write(record);
    } catch (err) {
      // What was done stays done; the client is told the record is missing.
      const e = new Error(`audit: outcome of request ${id} not written`, { cause: err });
      this.deps.reportError?.(e);
      out.reply.message += `; WARNING: the audit log could not be written (${errorText(err)})`;
    }
    this.deps.observer?.request({ door: ctx.door ?? 'unknown', cluster: record.cluster, action: record.action, decision: record.decision, code: record.code, durationMs: record.duration_ms });
    this.deps.outcome?.(record, ctx.door ?? 'unknown');
    return out;
  }

  /** A refusal by the policy; reasons that would reveal another tenant's domain are hidden from nodes. */
  private refused(who: Identity, base: { action: string; target: string; request_id: string }, reasons: Reason[]): Handled {
    const hidden = who.kind === 'node' && reasons.some((r) => HIDDEN.has(r.code));
    const message = hidden
      ? `refused: ${base.target} is not a domain you may act on`
      : `refused: ${reasons.map((r) => (r.code === 'policy_error' ? 'policy error' : reasonText(r))).join('; ')}`;
    return reply(base, 'refused', { message });
  }

  /** A power action refused because the store did not answer: nothing done, and the audit says why. */
  private unavailable(record: AuditRecord, base: { action: string; target: string; request_id: string }, err: unknown): Handled {
    const why = errorText(err);
    if (!(err instanceof CoordinationUnavailable)) this.deps.reportError?.(new Error(`coordination: ${why}`, { cause: err }));
    const message = `refused: the fence race cannot be checked (${why}); nothing was done, try again`;
    record.decision = 'error';
    record.reasons = [reason('coordination_unavailable', why)];
    record.result = { ok: false, state: 'unknown', message };
    return reply(base, 'coordination_unavailable', { message });
  }

  /** Ends a claim; a store that fails now only shortens the mark to its lease. */
  private async finishClaim(claim: Claim, end: FenceEnd): Promise<void> {
    try {
      await this.deps.coordination.finish(claim, end);
    } catch (err) {
      this.deps.reportError?.(new Error(`coordination: the race mark of ${claim.target} was not renewed after the fence`, { cause: err }));
    }
  }

  /** Counts a request of `who` in progress, or says it is one too many. */
  private admit(who: Identity): (() => void) | undefined {
    const key = who.fingerprint;
    const n = this.inProgress.get(key) ?? 0;
    if (n >= this.deps.maxQueuePerIdentity) return undefined;
    this.inProgress.set(key, n + 1);
    return () => {
      const left = (this.inProgress.get(key) ?? 1) - 1;
      if (left > 0) this.inProgress.set(key, left);
      else this.inProgress.delete(key);
    };
  }

  private async decideAndAct(who: Identity, command: string, engine: PolicyEngine, record: AuditRecord, id: string, signal: AbortSignal, door: string): Promise<Handled> {
    const parsed = parseRequest(command);
    if (!parsed.ok) {
      record.decision = 'malformed';
      record.reasons = [reason('malformed', parsed.error)];
      return reply({ action: '', target: '', request_id: id }, 'malformed', { message: `malformed request: ${parsed.error}` });
    }
    const req = parsed.request;
    const target = 'target' in req ? req.target : '';
    record.action = req.verb;
    record.target = target || null;

    const input: DecisionInput = {
      requester: who.kind === 'node' ? { cluster: who.cluster, node: who.node } : { admin: who.admin },
      action: req.verb,
      ...(target ? { target } : {}),
    };
    const base = { action: req.verb, target, request_id: id };
    // Power actions by a node need the race facts (and the storm count) from
    // the coordination store; reads never do. The rules themselves stay in Rego.
    const power = req.verb === 'on' || req.verb === 'off' || req.verb === 'reset';
    const storm = who.kind === 'node' ? this.deps.storm?.(who.cluster) : undefined;
    const stormWindowMs = storm?.windowMs;
    if (power && who.kind === 'node') {
      let facts: RaceFacts;
      try {
        facts = await this.deps.coordination.facts({ cluster: who.cluster, node: who.node, requesterDomain: who.domain, ...(target ? { target } : {}), ...(stormWindowMs === undefined ? {} : { stormWindowMs }) });
      } catch (err) {
        return this.unavailable(record, base, err);
      }
      input.requester_fenced = facts.requesterFenced;
      input.recent_fences = facts.recentFences;
    }
    const decision = engine.decide(input);
    record.decision = decision.allow ? 'allow' : 'deny';
    record.reasons = decision.reasons;

    if (!decision.allow) return this.refused(who, base, decision.reasons);

    // Bounded per identity: one tenant cannot queue without limit.
    const done = this.admit(who);
    if (!done) {
      const message = `busy: ${this.deps.maxQueuePerIdentity} requests of this identity already in progress (max_queue_per_identity); nothing was done`;
      record.result = { ok: false, state: 'unknown', message, busy: true };
      return reply(base, 'busy', { message });
    }
    if (req.verb === 'list' || req.verb === 'gethosts') {
      // The policy says which domains the caller may see; the toolstack, which of them this host has.
      let listed;
      try {
        listed = await this.deps.fencer.list(decision.domains ?? [], { signal });
      } finally {
        done();
      }
      if (!listed.ok) {
        record.result = { ok: false, state: 'unknown', message: listed.message };
        return reply(base, 'failed', { message: listed.message });
      }
      record.result = { ok: true, state: 'unknown', message: `${listed.domains.length} domains on this host` };
      return reply(base, 'ok', { message: `${listed.domains.length} domains on this host`, domains: listed.domains, states: listed.states });
    }

    // The claim checks the race again, atomically with marking the target: of
    // two nodes fencing each other at once, through any brokers, one loses
    // here. Last before the intent and the action, so that nothing refused
    // earlier (policy, busy) leaves a mark.
    const fences = req.verb === 'off' || req.verb === 'reset';
    let claim: Claim | undefined;
    if (fences && who.kind === 'node') {
      const c: Claim = {
        cluster: who.cluster, node: who.node, requesterDomain: who.domain, target, requestId: id, raceWindowMs: this.deps.raceWindowMs,
        ...(storm ? { stormWindowMs: storm.windowMs, stormLimit: storm.fences } : {}),
      };
      let outcome;
      try {
        outcome = await this.deps.coordination.claim(c);
      } catch (err) {
        done();
        return this.unavailable(record, base, err);
      }
      if (outcome.outcome !== 'claimed') {
        done();
        // The policy words the refusal, from the fact just learnt.
        const learnt = outcome.outcome === 'lost' ? { requester_fenced: true } : { recent_fences: outcome.recentFences };
        const again = engine.decide({ ...input, ...learnt });
        record.decision = again.allow ? 'allow' : 'deny';
        record.reasons = again.reasons;
        if (!again.allow) return this.refused(who, base, again.reasons);
        // A policy without the rule: the claim still stands in the way.
        record.decision = 'deny';
        const why =
          outcome.outcome === 'lost'
            ? reason('fence_race_lost', 'the coordination store says this node lost the fence race')
            : reason('fence_storm_limit', `the coordination store counts ${outcome.recentFences} domains of this cluster fenced within its window`);
        record.reasons = [why];
        return reply(base, 'refused', { message: `refused: ${reasonText(why)}` });
      }
      claim = c;
    }

    // Write-ahead: no power action without a record on disk first.
    if (req.verb !== 'status') {
      try {
        this.deps.audit.intent({
          event: 'intent', request_id: id, door: record.door, peer: record.peer, fingerprint: record.fingerprint,
          ...(record.channel === undefined ? {} : { channel: record.channel, channel_domain: record.channel_domain }),
          cluster: record.cluster,
          node: record.node, action: req.verb, target, policy: record.policy,
        });
      } catch (err) {
        done();
        if (claim) await this.finishClaim(claim, 'untouched');
        this.deps.reportError?.(new Error(`audit: intent of request ${id} not written; refused`, { cause: err }));
        const message = `refused: the audit log cannot be written (${errorText(err)}); nothing was done`;
        record.result = { ok: false, state: 'unknown', message };
        return reply(base, 'failed', { message });
      }
    }
    let result: FenceResult | undefined;
    if (power) this.running.set(id, { request_id: id, door, cluster: record.cluster, node: record.node, admin: record.admin, action: req.verb, target, since: new Date().toISOString() });
    try {
      result = await this.deps.fencer.do(req.verb, target, { signal });
    } finally {
      this.running.delete(id);
      if (claim) await this.finishClaim(claim, fenceEnd(result));
      done();
    }
    record.result = {
      ok: result.ok,
      state: result.state,
      message: result.message,
      steps: result.steps,
      ...(result.started === undefined ? {} : { started: result.started }),
      ...(result.busy ? { busy: true } : {}),
      ...(result.dropped ? { dropped: true } : {}),
      // Not confirmed, but it may still land: its target stays marked (journal.ts reads this back).
      ...(claim && !result.ok && fenceEnd(result) === 'unsure' ? { destroy_unrefuted: true } : {}),
    };
    const code: ReplyCode = result.ok ? 'ok' : result.busy ? 'busy' : result.notFound ? 'not_found' : 'failed';
    return reply(base, code, { state: result.state, message: result.message });
  }
}

/** What a claimed off/reset did, for its mark: only a domain this host lacks, or no destroy at all, is untouched. */
function fenceEnd(r: FenceResult | undefined): FenceEnd {
  if (r?.ok) return 'fenced';
  // A throw mid-action: a destroy may have been sent.
  if (!r) return 'unsure';
  return r.destroyIssued && !r.notFound ? 'unsure' : 'untouched';
}
