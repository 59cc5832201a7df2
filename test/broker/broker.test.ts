// One request through broker.ts, called directly (the real policy bundle, the
// sim toolstack, an audit that fails on demand): no power action without its
// intent on record, and when the outcome line cannot be written after the
// action, the reply still says what was done, and that the record is missing.
import test from 'ava';
import { join } from 'node:path';
import type { Audit, AuditRecord, IntentRecord } from '../../broker/audit.js';
import { Broker } from '../../broker/broker.js';
import { LocalCoordination } from '../../broker/coordination/local.js';
import { parseConfig } from '../../broker/config/load.js';
import { Fencer } from '../../broker/fencer.js';
import { IdentityIndex } from '../../broker/identity/index.js';
import { DEFAULT_BUNDLE, readBundle } from '../../broker/policy/bundle.js';
import { policyData } from '../../broker/policy/data.js';
import { PolicyEngine } from '../../broker/policy/engine.js';
import { SimToolstack } from '../../broker/toolstack/sim.js';
import { newPublicKey, tempDir } from '../helpers.js';
import { recording } from '../recording.js';

async function setup(fail: { intent?: boolean; write?: boolean }) {
  const dir = tempDir('fb-broker-');
  const config = parseConfig(
    ['broker:', '  listen: 127.0.0.1:0', '  host_key: k', '  toolstack: { type: sim, state: sim.json }', '  audit_log: a.jsonl', 'clusters:', '  blue:', '    domains: [blue-1, blue-2]', `    nodes: { blue-1: { key: "${newPublicKey()}" } }`, ''].join('\n'),
    join(dir, 'clusters.yaml'),
  );
  const engine = await PolicyEngine.load(await readBundle(DEFAULT_BUNDLE), policyData(config));
  const { toolstack, calls } = recording(new SimToolstack(join(dir, 'sim.json'), ['blue-1', 'blue-2']));
  const lines: (AuditRecord | IntentRecord)[] = [];
  const audit: Audit = {
    intent: (r) => {
      if (fail.intent) throw new Error('ENOSPC: no space left on device, write');
      lines.push(r);
    },
    write: (r) => {
      if (fail.write) throw new Error('EIO: i/o error, write');
      lines.push(r);
    },
    refusal: () => undefined,
    refusedRequest: () => undefined,
    event: () => undefined,
    reopen: () => undefined,
    close: () => undefined,
  };
  const broker = new Broker({ policy: () => engine, fencer: new Fencer(toolstack), audit, coordination: new LocalCoordination(), raceWindowMs: 60_000, requestTimeoutMs: 40_000, maxQueuePerIdentity: 32 });
  const who = new IdentityIndex(config).lookup(Buffer.from(config.clusters.blue?.nodes['blue-1']?.key.blob ?? '', 'base64'))?.identity;
  if (!who) throw new Error('no identity');
  return { broker, who, calls, lines, toolstack };
}

test('an intent that cannot be written: the fence is refused and the toolstack is never called', async (t) => {
  const { broker, who, calls } = await setup({ intent: true });
  const r = await broker.handle(who, 'test', 'off blue-2');
  t.is(r.exitCode, 1);
  t.like(r.reply, { ok: false, code: 'failed' });
  t.regex(r.reply.message, /refused: the audit log cannot be written \(ENOSPC.*\); nothing was done/);
  t.deepEqual(calls, []);
});

test('an outcome that cannot be written after the fence: the reply says it is off, and that the record is missing', async (t) => {
  const { broker, who, calls, lines, toolstack } = await setup({ write: true });
  const r = await broker.handle(who, 'test', 'off blue-2');
  t.is(r.exitCode, 0);
  t.like(r.reply, { ok: true, state: 'off', code: 'ok' });
  t.regex(r.reply.message, /WARNING: the audit log could not be written \(EIO/);
  t.true(calls.some((c) => c.op === 'destroy'));
  t.is((await toolstack.state('blue-2')).observed, 'stopped');
  t.deepEqual(lines.map((l) => l.event), ['intent'], 'the intent is on record');
});

test('status needs no intent: one outcome line', async (t) => {
  const { broker, who, lines } = await setup({});
  const r = await broker.handle(who, 'test', 'status blue-1');
  t.is(r.exitCode, 0);
  t.deepEqual(lines.map((l) => l.event), ['request']);
});
