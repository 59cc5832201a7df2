// The decision step: policy.wasm evaluated in process with opa-wasm. Every
// failure (load, data, evaluation, an undefined or malformed result) is a deny
// with a reason; nothing here can turn an error into an allow.
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import type { Bundle } from './bundle.js';
import { ENTRYPOINT } from './bundle.js';
import type { PolicyData } from './data.js';

export type Requester = { cluster: string; node: string } | { admin: string };

export interface DecisionInput {
  requester: Requester;
  action: string;
  target?: string;
  /** Fence race: the requester's own domain is being, or was just, fenced. */
  requester_fenced?: boolean;
  /** Storm limit: distinct domains of the requester's cluster fenced in its window. */
  recent_fences?: number;
}

/** Why a request was refused: a stable code (the Rego rule's METADATA) and words for people. */
export interface Reason {
  code: string;
  detail: string;
}

export interface Decision {
  allow: boolean;
  reasons: Reason[];
  /** Present on an allowed list/gethosts: the domains the requester may see. */
  domains?: string[];
}

type Loaded = Awaited<ReturnType<typeof loadPolicy>>;

export const reason = (code: string, detail: string): Reason => ({ code, detail });

/** A reason as one line of text, as refusal messages and fencectl show it. */
export const reasonText = (r: Reason): string => `${r.code}: ${r.detail}`;

const deny = (detail: string): Decision => ({ allow: false, reasons: [reason('policy_error', detail)] });

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

const isReasonArray = (v: unknown): v is Reason[] =>
  Array.isArray(v) &&
  v.every((x) => typeof x === 'object' && x !== null && typeof (x as Reason).code === 'string' && /^[a-z][a-z_]*$/.test((x as Reason).code) && typeof (x as Reason).detail === 'string');

/** Checks the shape of what the wasm returned; anything unexpected is a deny. */
export function toDecision(raw: unknown): Decision {
  if (!Array.isArray(raw) || raw.length === 0) return deny('undefined decision');
  if (raw.length > 1) return deny('more than one decision');
  const result = (raw[0] as { result?: unknown } | undefined)?.result as Record<string, unknown> | undefined;
  if (typeof result !== 'object' || result === null) return deny('decision is not an object');
  const { allow, reasons, domains } = result;
  if (typeof allow !== 'boolean' || !isReasonArray(reasons)) return deny('decision lacks allow/reasons [{code, detail}]');
  if (domains !== undefined && !isStringArray(domains)) return deny('decision.domains is not a list of names');
  if (allow !== true) return { allow: false, reasons: reasons.length ? reasons : [reason('policy_error', 'denied without a reason')] };
  return domains === undefined ? { allow: true, reasons } : { allow: true, reasons, domains };
}

export class PolicyEngine {
  private constructor(
    private readonly policy: Loaded,
    readonly revision: string,
    readonly sha256: string,
  ) {}

  /** Loads a fresh instance (wasm memory never shrinks, so reload = new instance). */
  static async load(bundle: Bundle, data: PolicyData): Promise<PolicyEngine> {
    let policy: Loaded;
    try {
      policy = await loadPolicy(bundle.wasm);
    } catch (err) {
      throw new Error(`policy ${bundle.revision}: cannot load policy.wasm: ${String(err)}`, { cause: err });
    }
    if (!Object.prototype.hasOwnProperty.call(policy.entrypoints, ENTRYPOINT)) {
      throw new Error(`policy ${bundle.revision}: no entrypoint ${ENTRYPOINT}`);
    }
    try {
      // A JSON ArrayBuffer is parsed inside wasm: several times faster than an object for big data.
      policy.setData(new TextEncoder().encode(JSON.stringify(data)).buffer as ArrayBuffer);
    } catch (err) {
      throw new Error(`policy ${bundle.revision}: cannot set data: ${String(err)}`, { cause: err });
    }
    return new PolicyEngine(policy, bundle.revision, bundle.sha256);
  }

  decide(input: DecisionInput): Decision {
    try {
      return toDecision(this.policy.evaluate(input, ENTRYPOINT));
    } catch (err) {
      return deny(`evaluation failed: ${String(err)}`);
    }
  }
}
