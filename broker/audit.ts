// The audit step (docs/design.md §3.5): one JSON line per request (accepted,
// denied, malformed), and before any power action an intent line with the
// same request id, written and flushed to disk (fsync): no fence without a
// record. pino formats; the writing is ours, synchronous and unbuffered, so a
// write that fails throws to the caller at once (the request is then refused,
// or its reply says the record is missing) instead of being retried for ever
// behind the daemon's back. Refusals before a request exists are audited too,
// at most one line per kind every 10 s with a count of those left out.
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { Reason } from './policy/engine.js';

export interface AuditRecord {
  event: 'request';
  request_id: string;
  /** The door it came through: "ssh", "fence_virt/tcp", "fence_virt/multicast", "fence_virt/serial". */
  door: string;
  peer: string;
  fingerprint: string;
  /** fence_virt/serial: the channel socket the request came out of, and the domain it proves. */
  channel?: string;
  channel_domain?: string;
  cluster: string | null;
  node: string | null;
  admin: string | null;
  /** The raw command as received (truncated), for malformed requests especially. */
  command: string;
  action: string | null;
  target: string | null;
  decision: 'allow' | 'deny' | 'malformed' | 'error';
  /** The policy's reasons, or the broker's own (malformed, coordination_unavailable, internal_error). */
  reasons: Reason[];
  policy: { revision: string; sha256: string };
  result: { ok: boolean; state: string; message: string; steps?: string[]; started?: boolean; busy?: boolean; dropped?: boolean; destroy_unrefuted?: boolean } | null;
  /** The reply code sent (common/wire.ts). */
  code: string;
  /** Set when the client went away before the reply. */
  client_gone?: boolean;
  exit_code: number;
  duration_ms: number;
}

/** Written, and on disk, before a power action touches the toolstack. */
export type IntentRecord = Pick<AuditRecord, 'request_id' | 'door' | 'peer' | 'fingerprint' | 'channel' | 'channel_domain' | 'cluster' | 'node' | 'action' | 'target' | 'policy'> & { event: 'intent' };

/** Something refused before a request existed (authentication, channel requests, limits). */
export interface RefusalRecord {
  event: 'refusal';
  /** What kind of refusal: auth_unknown_key, channel_refused, no_slot, ... */
  kind: string;
  peer: string;
  [field: string]: unknown;
}

export interface Audit {
  /** Writes and fsyncs an intent line; throws when it cannot (then nothing may be done). */
  intent(record: IntentRecord): void;
  /** Writes an outcome line; throws when it cannot. */
  write(record: AuditRecord): void;
  /** Audits a refusal, at most one line per kind (and channel request) every 10 s; never throws (there is nobody to tell). */
  refusal(record: RefusalRecord): void;
  /**
   * A request a door ended before the broker saw it (fence_virt: malformed,
   * unverified, replayed): one line each, never throttled (the door bounds
   * how many it lets through); never throws.
   */
  refusedRequest(record: RefusalRecord): void;
  /** A daemon event (start, reload); throws when it cannot be written and flushed. */
  event(name: string, fields: Record<string, unknown>): void;
  /** Closes and reopens the file (logrotate moved it). Throws when it cannot. */
  reopen(): void;
  close(): void;
}

/**
 * Opens `path` for appending. A process killed in the middle of a write can
 * leave a last line without its newline: end it, so the next line stands on
 * its own (the torn one is skipped and reported by the journal's replay).
 */
function openForAppend(path: string): number {
  const fd = openSync(path, 'a', 0o640);
  const size = fstatSync(fd).size;
  if (size > 0) {
    const last = Buffer.alloc(1);
    const rfd = openSync(path, 'r');
    try {
      readSync(rfd, last, 0, 1, size - 1);
    } finally {
      closeSync(rfd);
    }
    if (last[0] !== 0x0a) writeSync(fd, '\n');
  }
  return fd;
}

/** Opens the audit log for appending; throws (with the cause) when it cannot. */
export function fileAudit(path: string, onError: (err: Error) => void = () => undefined): Audit {
  mkdirSync(dirname(path), { recursive: true });
  let fd = openForAppend(path);
  const sink = {
    write(line: string): void {
      const bytes = Buffer.from(line);
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off);
    },
  };
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, sink);
  const lastRefusal = new Map<string, { at: number; suppressed: number }>();
  return {
    intent(record) {
      log.info(record);
      fsyncSync(fd);
    },
    write(record) {
      log.info(record);
    },
    refusal(record) {
      const now = performance.now();
      const key = `${record.kind}/${String(record.request ?? '')}`;
      const seen = lastRefusal.get(key);
      if (seen && now - seen.at < 10_000) {
        seen.suppressed++;
        return;
      }
      lastRefusal.set(key, { at: now, suppressed: 0 });
      try {
        log.info(seen?.suppressed ? { ...record, suppressed_since_last: seen.suppressed } : record);
      } catch (err) {
        onError(new Error(`audit: cannot write a refusal line to ${path}`, { cause: err }));
      }
    },
    refusedRequest(record) {
      try {
        log.info(record);
      } catch (err) {
        onError(new Error(`audit: cannot write a refusal line to ${path}`, { cause: err }));
      }
    },
    event(name, fields) {
      log.info({ event: name, ...fields });
      fsyncSync(fd);
    },
    reopen() {
      const next = openForAppend(path);
      closeSync(fd);
      fd = next;
    },
    close() {
      closeSync(fd);
    },
  };
}
