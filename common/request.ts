// The request grammar of the broker's SSH exec channel (docs/design.md §10), shared
// by the broker (which parses what arrives) and the guest plugin (which builds
// what it sends): `VERB [DOMAIN]`, printable ASCII, single line. The verbs
// themselves are part of the wire contract (wire.ts).
import { nameProblem } from './names.js';
import { LIST_VERBS, TARGET_VERBS, VERBS, type ListVerb, type TargetVerb } from './wire.js';

export type Request = { verb: ListVerb } | { verb: TargetVerb; target: string };

export type Parsed = { ok: true; request: Request } | { ok: false; error: string };

export const MAX_REQUEST_LENGTH = 128;

const isListVerb = (v: string): v is ListVerb => (LIST_VERBS as readonly string[]).includes(v);
const isTargetVerb = (v: string): v is TargetVerb => (TARGET_VERBS as readonly string[]).includes(v);

/** Checks a verb and an optional target, as separate words (fencectl explain, the plugin). */
export function checkRequest(verb: string, target: string | undefined): Parsed {
  if (isListVerb(verb)) {
    if (target !== undefined) return { ok: false, error: `${verb} takes no domain, got ${JSON.stringify(target)}` };
    return { ok: true, request: { verb } };
  }
  if (isTargetVerb(verb)) {
    if (target === undefined) return { ok: false, error: `${verb} needs a domain name` };
    const problem = nameProblem(target);
    if (problem) return { ok: false, error: `domain: ${problem}` };
    return { ok: true, request: { verb, target } };
  }
  return { ok: false, error: `unknown verb ${JSON.stringify(verb.slice(0, 32))}; expected one of ${VERBS.join(', ')}` };
}

/** Parses one exec command line. Anything off-grammar is an error naming what was wrong. */
export function parseRequest(command: string): Parsed {
  if (command.length > MAX_REQUEST_LENGTH) {
    return { ok: false, error: `request longer than ${MAX_REQUEST_LENGTH} characters (${command.length})` };
  }
  const bad = /[^\x20-\x7e]/.exec(command);
  if (bad) {
    const code = bad[0].codePointAt(0)?.toString(16).padStart(2, '0') ?? '??';
    return { ok: false, error: `character U+${code} at column ${bad.index + 1} is not allowed (printable ASCII only)` };
  }
  const words = command.split(' ').filter((w) => w !== '');
  if (words.length === 0) return { ok: false, error: `empty request; expected "VERB [DOMAIN]" with VERB one of ${VERBS.join(', ')}` };
  if (words.length > 2) return { ok: false, error: `too many words (${words.length}); expected "VERB [DOMAIN]"` };
  return checkRequest(words[0] as string, words[1]);
}

export const formatRequest = (r: Request): string => ('target' in r ? `${r.verb} ${r.target}` : r.verb);
