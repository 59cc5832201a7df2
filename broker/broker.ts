// One request, top to bottom: (identity, already proven by the front door) →
// grammar → decision (Rego) → fencer → toolstack → reply, and exactly one
// audit line whatever happens. Every request has a deadline; it and the
// transport's "client gone" signal stop it before it reaches the toolstack.
// Transport-independent: the SSH front door and tests call handle() alike.
import { randomUUID } from 'node:crypto';
import { exitStatusOf, type ExitStatus, type ReplyCode, type WireReply } from '../common/wire.js';
import { parseRequest } from '../common/request.js';
import type { Audit, AuditRecord } from './audit.js';
import type { Fencer } from './fencer.js';
import type { Identity } from './identity/index.js';
import type { DecisionInput, PolicyEngine } from './policy/engine.js';

/** The JSON line a client gets back (DESIGN.md §10, common/reply.ts). */
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
}

/**
 * The fence race (DESIGN.md §4): once a node's own domain is being fenced, or
 * was fenced within the window, that node has lost and its requests are refused.
 */
export class FenceRace {
  private readonly inflight = new Map<string, number>();
  private readonly fencedAt = new Map<string, number>();

  constructor(private readonly windowMs: number) {}

  lost(domain: string): boolean {
    if ((this.inflight.get(domain) ?? 0) > 0) return true;
    const at = this.fencedAt.get(domain);
    return at !== undefined && performance.now() - at < this.windowMs;
  }

  begin(domain: string): void {
    this.inflight.set(domain, (this.inflight.get(domain) ?? 0) + 1);
  }

  end(domain: string, fenced: boolean): void {
    const n = (this.inflight.get(domain) ?? 1) - 1;
    if (n > 0) this.inflight.set(domain, n);
    else this.inflight.delete(domain);
    if (fenced) this.fencedAt.set(domain, performance.now());
  }
}

/** Reasons that would tell a tenant whether someone else's domain exists. */
const HIDDEN = ['target_unknown:', 'target_not_owned:'];

export interface BrokerDeps {
  /** The current policy (swapped on reload). */
  policy: () => PolicyEngine;
  fencer: Fencer;
  audit: Audit;
  race: FenceRace;
  /** From arrival to reply, ms (timeouts.request). */
  requestTimeoutMs: number;
  /** Requests of one identity waiting or running (limits.max_queue_per_identity). */
  maxQueuePerIdentity: number;
  /** Where errors nobody else will see go (the daemon log). */
  reportError?: (err: Error) => void;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const reply = (base: { action: string; target: string; request_id: string }, code: ReplyCode, fields: Partial<Reply> & { message: string }): Handled => ({
  reply: { ...base, ok: code === 'ok', state: 'unknown', code, ...fields },
  exitCode: exitStatusOf(code),
});

export class Broker {
  /** Requests in progress per identity (key fingerprint). */
  private readonly inProgress = new Map<string, number>();

  constructor(private readonly deps: BrokerDeps) {}

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
      peer,
      fingerprint: who.fingerprint,
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
      out = await this.decideAndAct(who, command, engine, record, id, signal);
    } catch (err) {
      record.decision = record.decision === 'allow' ? 'allow' : 'error';
      record.reasons.push(`internal_error: ${err instanceof Error ? err.message : String(err)}`);
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
    return out;
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

  private async decideAndAct(who: Identity, command: string, engine: PolicyEngine, record: AuditRecord, id: string, signal: AbortSignal): Promise<Handled> {
    const parsed = parseRequest(command);
    if (!parsed.ok) {
      record.decision = 'malformed';
      record.reasons = [`malformed: ${parsed.error}`];
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
      requester_fenced: who.kind === 'node' && this.deps.race.lost(who.domain),
    };
    // Decision and fence-race bookkeeping happen in one synchronous step, so two
    // nodes racing to fence each other cannot both pass.
    const decision = engine.decide(input);
    record.decision = decision.allow ? 'allow' : 'deny';
    record.reasons = decision.reasons;
    const base = { action: req.verb, target, request_id: id };

    if (!decision.allow) {
      const hidden = who.kind === 'node' && decision.reasons.some((r) => HIDDEN.some((h) => r.startsWith(h)));
      const message = hidden
        ? `refused: ${target} is not a domain you may act on`
        : `refused: ${decision.reasons.map((r) => r.replace(/^policy_error:.*/, 'policy error')).join('; ')}`;
      return reply(base, 'refused', { message });
    }

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

    // Write-ahead: no power action without a record on disk first.
    if (req.verb !== 'status') {
      try {
        this.deps.audit.intent({
          event: 'intent', request_id: id, peer: record.peer, fingerprint: record.fingerprint, cluster: record.cluster,
          node: record.node, action: req.verb, target, policy: record.policy,
        });
      } catch (err) {
        done();
        this.deps.reportError?.(new Error(`audit: intent of request ${id} not written; refused`, { cause: err }));
        const message = `refused: the audit log cannot be written (${errorText(err)}); nothing was done`;
        record.result = { ok: false, state: 'unknown', message };
        return reply(base, 'failed', { message });
      }
    }
    const fences = req.verb === 'off' || req.verb === 'reset';
    if (fences) this.deps.race.begin(target);
    let result;
    try {
      result = await this.deps.fencer.do(req.verb, target, { signal });
    } finally {
      if (fences) this.deps.race.end(target, result?.ok === true);
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
    };
    const code: ReplyCode = result.ok ? 'ok' : result.busy ? 'busy' : result.notFound ? 'not_found' : 'failed';
    return reply(base, code, { state: result.state, message: result.message });
  }
}
