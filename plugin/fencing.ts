// What an action means when the cluster may live on several hosts, each with
// its own broker (docs/design.md §4, migration): every broker is asked, and a domain
// one host does not have is not thereby off. Both plugin faces call only this.
import { checkRequest, type Request } from '../common/request.js';
import { reservedDomainProblem } from '../common/names.js';
import { loadIdentity, send, type ClientOptions, type Reply } from './client.js';

export interface Outcome {
  ok: boolean;
  state: 'on' | 'off' | 'unknown';
  message: string;
  domains?: string[];
  /** list / gethosts: each domain's state; a domain on several hosts (migrating) is on if any says on. */
  states?: Record<string, 'on' | 'off' | 'unknown'>;
  /** Every broker refused the target or lacks it: the name may be wrong (or not ours). */
  unknownTarget?: boolean;
}

export type Action = 'gethosts' | 'list' | 'status' | 'on' | 'off' | 'reset';

async function askAll(o: ClientOptions, request: Request): Promise<Reply[]> {
  return Promise.all(o.brokers.map((b) => send(o, b, request)));
}

const summary = (replies: Reply[]): string => replies.map((r) => `${r.broker}: ${r.message}`).join('; ');

/** Pure: combines the brokers' replies to one outcome. */
export function combine(action: Action, replies: Reply[]): Outcome {
  const ok = replies.filter((r) => r.ok);
  const absent = replies.filter((r) => !r.ok && r.code === 'not_found');
  const failed = replies.filter((r) => !r.ok && r.code !== 'not_found');
  const message = summary(replies);

  if (action === 'list' || action === 'gethosts') {
    const domains = [...new Set(ok.flatMap((r) => r.domains ?? []))].sort();
    const rank = { on: 2, unknown: 1, off: 0 } as const;
    const states: Record<string, 'on' | 'off' | 'unknown'> = {};
    for (const r of ok) {
      for (const [d, s] of Object.entries(r.states ?? {})) if (states[d] === undefined || rank[s] > rank[states[d]]) states[d] = s;
    }
    // A host that cannot be asked, or whose hypervisor does not answer, might hold more domains: fail.
    return { ok: ok.length > 0 && failed.length === 0, state: 'unknown', message, domains, states };
  }
  if (action === 'status') {
    if (ok.some((r) => r.state === 'on')) return { ok: true, state: 'on', message };
    if (ok.length > 0 && failed.length === 0) return { ok: true, state: 'off', message };
    return { ok: false, state: 'unknown', message };
  }
  // on / off / reset: one host did it, and every other host positively lacks the domain.
  if (ok.length >= 1 && failed.length === 0) {
    return { ok: true, state: ok[0]?.state ?? 'unknown', message };
  }
  if (ok.length === 0 && failed.length === 0 && absent.length > 0) {
    return { ok: false, state: 'unknown', message: `not found on any broker: ${message}`, unknownTarget: true };
  }
  const unknownTarget = ok.length === 0 && replies.every((r) => r.code === 'refused' || r.code === 'not_found');
  return { ok: false, state: failed[0]?.state ?? 'unknown', message, ...(unknownTarget ? { unknownTarget } : {}) };
}

/** Validates the target like the broker does, then asks every broker. */
export async function run(o: ClientOptions, action: Action, target?: string): Promise<Outcome> {
  const checked = checkRequest(action, target);
  if (!checked.ok) return { ok: false, state: 'unknown', message: checked.error };
  // Never a tenant domain (names.ts): refused here, for every face, before any broker is asked.
  const reserved = target === undefined ? undefined : reservedDomainProblem(target);
  if (reserved) return { ok: false, state: 'unknown', message: `domain: ${reserved}` };
  // A missing or unusable key fails at once, before any broker is dialled.
  const key = loadIdentity(o.identityFile);
  if (typeof key === 'string') return { ok: false, state: 'unknown', message: key };
  return combine(action, await askAll(o, checked.request));
}
