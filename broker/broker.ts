// One request, top to bottom: (identity, already proven by the front door) →
// grammar → decision (Rego) → fencer → toolstack → reply, and exactly one
// audit line whatever happens. Transport-independent: the SSH front door and
// tests call handle() alike.
import { randomUUID } from 'node:crypto';
import { parseRequest } from '../common/request.js';
import type { Audit, AuditRecord } from './audit.js';
import type { Fencer, PowerState } from './fencer.js';
import type { Identity } from './identity/index.js';
import type { DecisionInput, PolicyEngine } from './policy/engine.js';

/** The JSON line a client gets back (DESIGN.md §10). */
export interface Reply {
  ok: boolean;
  action: string;
  target: string;
  state: PowerState;
  message: string;
  /** ok | failed | not_found | refused | malformed: for scripts and the guest plugin. */
  code: 'ok' | 'failed' | 'not_found' | 'refused' | 'malformed';
  domains?: string[];
  request_id: string;
}

export interface Handled {
  reply: Reply;
  /** 0 success, 1 failure or refused, 2 malformed. */
  exitCode: 0 | 1 | 2;
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
}

export class Broker {
  constructor(private readonly deps: BrokerDeps) {}

  async handle(who: Identity, peer: string, command: string): Promise<Handled> {
    const t0 = performance.now();
    const engine = this.deps.policy();
    const id = randomUUID();
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
      exit_code: 1,
      duration_ms: 0,
    };
    let out: Handled;
    try {
      out = await this.decideAndAct(who, command, engine, record, id);
    } catch (err) {
      record.decision = record.decision === 'allow' ? 'allow' : 'error';
      record.reasons.push(`internal_error: ${err instanceof Error ? err.message : String(err)}`);
      out = {
        reply: { ok: false, action: record.action ?? '', target: record.target ?? '', state: 'unknown', message: 'internal error; see the broker log', code: 'failed', request_id: id },
        exitCode: 1,
      };
    } finally {
      record.duration_ms = Math.round(performance.now() - t0);
    }
    record.exit_code = out.exitCode;
    this.deps.audit.write(record);
    return out;
  }

  private async decideAndAct(who: Identity, command: string, engine: PolicyEngine, record: AuditRecord, id: string): Promise<Handled> {
    const parsed = parseRequest(command);
    if (!parsed.ok) {
      record.decision = 'malformed';
      record.reasons = [`malformed: ${parsed.error}`];
      return {
        reply: { ok: false, action: '', target: '', state: 'unknown', message: `malformed request: ${parsed.error}`, code: 'malformed', request_id: id },
        exitCode: 2,
      };
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
      return { reply: { ...base, ok: false, state: 'unknown', message, code: 'refused' }, exitCode: 1 };
    }

    if (req.verb === 'list' || req.verb === 'gethosts') {
      const domains = decision.domains ?? [];
      return { reply: { ...base, ok: true, state: 'unknown', message: `${domains.length} domains`, code: 'ok', domains }, exitCode: 0 };
    }

    const fences = req.verb === 'off' || req.verb === 'reset';
    if (fences) this.deps.race.begin(target);
    let result;
    try {
      result = await this.deps.fencer.do(req.verb, target);
    } finally {
      if (fences) this.deps.race.end(target, result?.ok === true);
    }
    record.result = {
      ok: result.ok,
      state: result.state,
      message: result.message,
      steps: result.steps,
      ...(result.started === undefined ? {} : { started: result.started }),
    };
    const code = result.ok ? 'ok' : result.notFound ? 'not_found' : 'failed';
    return { reply: { ...base, ok: result.ok, state: result.state, message: result.message, code }, exitCode: result.ok ? 0 : 1 };
  }
}
