// The daemon log's one line per request: who asked what through which door,
// the decision and the outcome, and the request id that finds its audit line.
// The audit log (audit.ts) stays the record; this is for the admin watching
// the foreground log.
import type { AuditRecord } from './audit.js';

export interface RequestLine {
  fields: {
    request_id: string;
    door: string;
    requester: string;
    action: string | null;
    target: string | null;
    decision: AuditRecord['decision'];
    outcome: string;
    duration_ms: number;
  };
  message: string;
}

/** "web/web-1 off web-2 via ssh: allow, ok (412 ms, request 1b2c…)" and the same as fields. */
export function requestLine(r: AuditRecord, door: string): RequestLine {
  const requester = r.cluster !== null ? `${r.cluster}/${r.node ?? '?'}` : r.admin !== null ? `admin ${r.admin}` : r.fingerprint;
  const what = r.action === null ? 'malformed request' : `${r.action}${r.target ? ` ${r.target}` : ''}`;
  return {
    fields: { request_id: r.request_id, door, requester, action: r.action, target: r.target, decision: r.decision, outcome: r.code, duration_ms: r.duration_ms },
    message: `request ${requester} ${what} via ${door}: ${r.decision}, ${r.code} (${r.duration_ms} ms, request ${r.request_id})`,
  };
}
