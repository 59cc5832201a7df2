// The wire contract of the broker's SSH exec channel (docs/design.md §10), written
// once for both ends: the verbs a request may use, the reply (one JSON line on
// stdout) with its codes and power states, and the channel's exit status. The
// broker builds replies from it, the guest plugin checks them against it; the
// request grammar (parsing, formatting) is in request.ts.

export const LIST_VERBS = ['gethosts', 'list'] as const;
export const TARGET_VERBS = ['status', 'on', 'off', 'reset'] as const;
export const VERBS = [...LIST_VERBS, ...TARGET_VERBS] as const;

export type ListVerb = (typeof LIST_VERBS)[number];
export type TargetVerb = (typeof TARGET_VERBS)[number];
export type Verb = ListVerb | TargetVerb;

export const POWER_STATES = ['on', 'off', 'unknown'] as const;
export type PowerState = (typeof POWER_STATES)[number];

/**
 * What happened, for scripts and the plugin (the message is for people):
 * - ok: done and verified
 * - failed: tried, not confirmed (or dropped: deadline passed, requester gone)
 * - not_found: this host does not have the domain (not proof of off)
 * - refused: the policy said no (a foreign and a missing domain look alike)
 * - malformed: the request broke the grammar
 * - busy: a bound was reached; nothing was done, try again
 * - coordination_unavailable: a power action needs the fleet's shared store
 *   (fence race, storm count) and it did not answer; nothing was done
 */
export const REPLY_CODES = ['ok', 'failed', 'not_found', 'refused', 'malformed', 'busy', 'coordination_unavailable'] as const;
export type ReplyCode = (typeof REPLY_CODES)[number];

export interface WireReply {
  ok: boolean;
  action: string;
  target: string;
  state: PowerState;
  message: string;
  code: ReplyCode;
  /** list / gethosts: the caller's domains this host really has, by name (read from the toolstack). */
  domains?: string[];
  /** list / gethosts: each listed domain's power state, from the same toolstack read. */
  states?: Record<string, PowerState>;
  request_id: string;
}

/** Channel exit status: 0 success, 1 failure or refused (busy included), 2 malformed. */
export type ExitStatus = 0 | 1 | 2;

export const exitStatusOf = (code: ReplyCode): ExitStatus => (code === 'ok' ? 0 : code === 'malformed' ? 2 : 1);
