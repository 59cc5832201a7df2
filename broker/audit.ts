// The audit step: one JSON line per request, accepted, denied or malformed
// (DESIGN.md §3.5), written synchronously so that nothing is lost.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';

export interface AuditRecord {
  event: 'request';
  request_id: string;
  peer: string;
  fingerprint: string;
  cluster: string | null;
  node: string | null;
  admin: string | null;
  /** The raw command as received (truncated), for malformed requests especially. */
  command: string;
  action: string | null;
  target: string | null;
  decision: 'allow' | 'deny' | 'malformed' | 'error';
  reasons: string[];
  policy: { revision: string; sha256: string };
  result: { ok: boolean; state: string; message: string; steps?: string[]; started?: boolean; busy?: boolean; dropped?: boolean } | null;
  /** The reply code sent (common/reply.ts). */
  code: string;
  /** Set when the client went away before the reply. */
  client_gone?: boolean;
  exit_code: number;
  duration_ms: number;
}

export interface Audit {
  write(record: AuditRecord): void;
  flush(): void;
}

export function fileAudit(path: string): Audit {
  mkdirSync(dirname(path), { recursive: true });
  // sync: every line reaches the file (write(2)) before the reply is sent.
  const dest = pino.destination({ dest: path, sync: true, append: true, mode: 0o640 });
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, dest);
  return {
    write: (record) => log.info(record),
    flush: () => dest.flushSync(),
  };
}
