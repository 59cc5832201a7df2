// The audit log is the journal (issue 17): at start the broker reads back the
// recent past of its own audit log and rebuilds what local coordination kept
// in memory (race marks and storm counts), so a crash and a restart do not
// turn a fence race's loser into a winner or reset a storm limit. It also
// finds power actions that have an intent line and no outcome: cut short by
// the crash, possibly done. Reading is bounded: only the tail within the
// lookback is read, backwards in chunks, from the live file and, when the
// window reaches back into it, the previous one (logrotate's `.1`).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { holderOf } from './coordination/coordination.js';

/** One audit line, as far as replay needs it. */
interface Line {
  event?: string;
  time?: string;
  request_id?: string;
  action?: string | null;
  target?: string | null;
  cluster?: string | null;
  node?: string | null;
  peer?: string;
  fingerprint?: string;
  result?: { ok?: boolean; destroy_unrefuted?: boolean } | null;
  /** On an `interrupted` event: when the intent was written. */
  intent_time?: string;
}

export interface TornLine {
  file: string;
  /** Byte offset of the line in the file. */
  offset: number;
  /** Its first bytes, for the report. */
  head: string;
}

export interface AuditTail {
  /** Parsed lines within the lookback, oldest first. */
  lines: Line[];
  /** Lines that are not JSON (a write cut short by a crash), skipped. */
  torn: TornLine[];
  /** Files read, oldest first. */
  files: string[];
  /** Bytes read in all. */
  bytes: number;
}

const CHUNK = 64 * 1024;

/**
 * The lines of `file` whose time is at or after `sinceMs` (epoch ms), oldest
 * first, read backwards: reading stops at the first line older than that.
 * `reachedStart`: the whole file was newer (so the previous file may matter).
 */
function tailOf(file: string, sinceMs: number): { lines: Line[]; torn: TornLine[]; bytes: number; reachedStart: boolean } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`journal: cannot open ${file}`, { cause: err });
  }
  try {
    const chunks: Line[][] = []; // newest first
    const torn: TornLine[] = [];
    let end = fstatSync(fd).size;
    let carry = Buffer.alloc(0); // the start of a line whose beginning is in an earlier chunk
    let bytes = 0;
    for (;;) {
      const start = Math.max(0, end - CHUNK);
      const chunk = Buffer.alloc(end - start);
      readSync(fd, chunk, 0, chunk.length, start);
      bytes += chunk.length;
      const buf = Buffer.concat([chunk, carry]);
      // Complete lines are those after the first newline (or all, at the file's start).
      const cut = start === 0 ? 0 : buf.indexOf(0x0a) + 1;
      if (start !== 0 && cut === 0) {
        // No newline in this chunk: the line goes on further back.
        carry = buf;
        end = start;
        continue;
      }
      const newer: Line[] = [];
      let older = false;
      for (let pos = cut; pos < buf.length; ) {
        let nl = buf.indexOf(0x0a, pos);
        if (nl < 0) nl = buf.length;
        const text = buf.subarray(pos, nl).toString('utf8');
        if (text.trim() !== '') {
          let line: Line | undefined;
          try {
            const parsed: unknown = JSON.parse(text);
            if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) line = parsed as Line;
          } catch {
            line = undefined;
          }
          if (!line) torn.push({ file, offset: start + pos, head: text.slice(0, 80) });
          else {
            const at = Date.parse(line.time ?? '');
            if (!Number.isNaN(at) && at < sinceMs) older = true;
            else newer.push(line);
          }
        }
        pos = nl + 1;
      }
      chunks.push(newer);
      if (older || start === 0) return { lines: chunks.reverse().flat(), torn: torn.sort((a, b) => a.offset - b.offset), bytes, reachedStart: !older };
      carry = buf.subarray(0, cut);
      end = start;
    }
  } finally {
    closeSync(fd);
  }
}

/** The audit lines of the last `lookbackMs`, from `path` and, if the window reaches back into it, `path.1`. */
export function readAuditTail(path: string, lookbackMs: number, nowMs = Date.now()): AuditTail {
  const since = nowMs - lookbackMs;
  const out: AuditTail = { lines: [], torn: [], files: [], bytes: 0 };
  const live = tailOf(path, since);
  if (live) {
    out.lines = live.lines;
    out.torn = live.torn;
    out.files = [path];
    out.bytes = live.bytes;
  }
  if (!live || live.reachedStart) {
    // logrotate (delaycompress) leaves the previous file uncompressed as `.1`.
    const previous = tailOf(`${path}.1`, since);
    if (previous) {
      out.lines = [...previous.lines, ...out.lines];
      out.torn = [...previous.torn, ...out.torn];
      out.files = [`${path}.1`, ...out.files];
      out.bytes += previous.bytes;
    }
  }
  return out;
}

/** A race mark to restore: the target was (or may have been) fenced at `at` by `holder`. */
export interface RestoredMark {
  target: string;
  holder: string;
  /** Epoch ms from which the race window runs. */
  at: number;
}

/** A fence a storm limit counts: `target` of `cluster`, claimed at `at` (epoch ms). */
export interface RestoredFence {
  cluster: string;
  target: string;
  at: number;
}

/** A power action with an intent line and no outcome: the process died while it ran. */
export interface Interrupted {
  request_id: string;
  action: string;
  target: string;
  cluster: string | null;
  node: string | null;
  peer: string | null;
  fingerprint: string | null;
  intent_time: string;
}

export interface Replay {
  marks: RestoredMark[];
  fences: RestoredFence[];
  /** Found now: report them (an audit event each), then they count as reported. */
  interrupted: Interrupted[];
}

const FENCING = new Set(['off', 'reset']);

/**
 * What the lines say, as pure data. The rules are local coordination's:
 * a node's off/reset counts toward its cluster's storm from its claim (the
 * intent line is written right after it) whatever its outcome; a confirmed
 * fence, or a destroy issued and not refuted, marks its target for the race
 * window from its outcome; any other failure leaves no mark; one cut short by a crash may have powered the target off,
 * so its target stays marked for the window from the moment it was found
 * (an earlier start's `interrupted` event, or now).
 */
export function replay(lines: Line[], nowMs: number): Replay {
  const intents = new Map<string, Line>();
  const outcomes = new Map<string, Line>();
  const reported = new Map<string, Line>();
  for (const l of lines) {
    if (!l.request_id) continue;
    if (l.event === 'intent') intents.set(l.request_id, l);
    else if (l.event === 'request') outcomes.set(l.request_id, l);
    else if (l.event === 'interrupted') reported.set(l.request_id, l);
  }
  const marks: RestoredMark[] = [];
  const fences: RestoredFence[] = [];
  const interrupted: Interrupted[] = [];
  const fenceOf = (l: Line) => l.cluster && l.node && l.target && l.action && FENCING.has(l.action);
  for (const l of reported.values()) {
    // Found at an earlier start; its intent may be older than the lookback.
    if (fenceOf(l)) marks.push({ target: l.target!, holder: holderOf({ cluster: l.cluster!, node: l.node! }), at: Date.parse(l.time ?? '') || nowMs });
  }
  for (const [id, intent] of intents) {
    if (!intent.action || !intent.target) continue;
    const at = Date.parse(intent.time ?? '');
    const fence = fenceOf(intent);
    if (fence && !Number.isNaN(at)) fences.push({ cluster: intent.cluster!, target: intent.target, at });
    const outcome = outcomes.get(id);
    if (outcome) {
      // A fence confirmed, or a destroy issued and not refuted (it may still land): marked from its outcome.
      if (fence && (outcome.result?.ok === true || outcome.result?.destroy_unrefuted === true)) {
        marks.push({ target: intent.target, holder: holderOf({ cluster: intent.cluster!, node: intent.node! }), at: Date.parse(outcome.time ?? '') || nowMs });
      }
      continue;
    }
    if (reported.has(id)) continue;
    interrupted.push({
      request_id: id,
      action: intent.action,
      target: intent.target,
      cluster: intent.cluster ?? null,
      node: intent.node ?? null,
      peer: intent.peer ?? null,
      fingerprint: intent.fingerprint ?? null,
      intent_time: intent.time ?? '',
    });
    if (fence) marks.push({ target: intent.target, holder: holderOf({ cluster: intent.cluster!, node: intent.node! }), at: nowMs });
  }
  return { marks, fences, interrupted };
}
