// The compiled policy as the broker runs it (policy.wasm through opa-wasm), the
// Rego unit tests through the real OPA toolchain, and the deny-on-error paths.
import test from 'ava';
import { execa } from 'execa';
import { mkdirSync, writeFileSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../broker/config/load.js';
import { buildBundle, currentBundle, findOpa, readBundle, sourceRevision, POLICIES_DIR } from '../broker/policy/bundle.js';
import { policyData } from '../broker/policy/data.js';
import { PolicyEngine, toDecision } from '../broker/policy/engine.js';
import { checkRego } from '../broker/policy/load.js';
import { projectPath } from '../common/paths.js';
import { fencectl, tempDir } from './helpers.js';

test('Rego: opa fmt, opa check --strict and opa test with 100% coverage (scripts/rego-check.sh)', async (t) => {
  const r = await execa('bash', [projectPath('scripts', 'rego-check.sh')], { reject: false, all: true });
  t.is(r.exitCode, 0, r.all);
  t.regex(r.all ?? '', /PASS: \d+\/\d+/);
  t.regex(r.all ?? '', /fencing\.rego coverage 100%/);
  t.notRegex(r.all ?? '', /FAIL/);
});

test('wasm decisions on the example config match what a reviewer reads in the Rego', async (t) => {
  const config = loadConfig(projectPath('clusters.yaml'));
  const engine = await PolicyEngine.load(await currentBundle(), policyData(config));
  const blue1 = { cluster: 'blue', node: 'blue-1' };
  const redA = { cluster: 'red', node: 'red-a' };
  t.deepEqual(engine.decide({ requester: blue1, action: 'off', target: 'blue-2' }), { allow: true, reasons: [] });
  t.deepEqual(engine.decide({ requester: blue1, action: 'list' }), { allow: true, reasons: [], domains: ['blue-1', 'blue-2', 'blue-3'] });
  t.deepEqual(engine.decide({ requester: { admin: 'ops' }, action: 'gethosts' }).domains, ['blue-1', 'blue-2', 'blue-3', 'red-vm-a', 'red-vm-b']);
  const cases: [object, string, string | undefined, string][] = [
    [blue1, 'off', 'red-vm-a', 'target_not_owned'],
    [blue1, 'off', 'blue-1', 'self_off'],
    [blue1, 'reset', 'blue-1', 'self_fence'],
    [redA, 'on', 'red-vm-b', 'action_not_enabled'],
    [{ cluster: 'blue', node: 'red-a' }, 'status', 'blue-1', 'not_a_member'],
    [{ cluster: 'green', node: 'g' }, 'status', 'blue-1', 'unknown_cluster'],
    [{ admin: 'ops' }, 'off', 'blue-1', 'admin_read_only'],
    [{ admin: 'eve' }, 'list', undefined, 'unknown_admin'],
    [blue1, 'off', 'nobody', 'target_unknown'],
    [blue1, 'off', undefined, 'target_missing'],
  ];
  for (const [requester, action, target, code] of cases) {
    const d = engine.decide({ requester: requester as never, action, ...(target ? { target } : {}) });
    t.false(d.allow, `${JSON.stringify(requester)} ${action} ${target}`);
    t.true(d.reasons.some((r) => r.code === code), `${code} in ${JSON.stringify(d.reasons)}`);
    t.is(d.domains, undefined);
  }
});

test('any malformed or undefined policy result is a deny with a reason', (t) => {
  const denied = (raw: unknown) => {
    const d = toDecision(raw);
    t.false(d.allow, JSON.stringify(raw));
    t.true(d.reasons.length > 0);
    t.is(d.reasons[0]?.code, 'policy_error');
    return d.reasons[0]?.detail;
  };
  t.regex(denied([]) ?? '', /undefined decision/);
  t.regex(denied(undefined) ?? '', /undefined decision/);
  denied([{ result: { allow: 'true', reasons: [] } }]);
  denied([{ result: { allow: 1, reasons: [] } }]);
  denied([{ result: { allow: true } }]);
  denied([{ result: { allow: true, reasons: [], domains: [1] } }]);
  // Reasons are {code, detail} objects; a bare string or a code that is not snake_case is malformed.
  denied([{ result: { allow: false, reasons: ['self_fence: x'] } }]);
  denied([{ result: { allow: false, reasons: [{ code: 'Self Fence', detail: 'x' }] } }]);
  denied([{ result: null }]);
  denied([{ result: { allow: true, reasons: [] } }, { result: { allow: true, reasons: [] } }]);
  t.regex(denied([{ result: { allow: false, reasons: [] } }]) ?? '', /denied without a reason/);
  t.true(toDecision([{ result: { allow: true, reasons: [] } }]).allow);
});

test('a policy without the entrypoint, or bytes that are not wasm, refuse to load', async (t) => {
  const good = await currentBundle();
  await t.throwsAsync(PolicyEngine.load({ ...good, wasm: new Uint8Array([0, 97, 115, 109, 9, 9]) }, policyData({ clusters: {}, admins: {} })), {
    message: /cannot load policy\.wasm/,
  });

  // A real policy whose only entrypoint is another one.
  const dir = tempDir();
  writeFileSync(join(dir, 'other.rego'), 'package other\n\nallow := true\n');
  const out = join(dir, 'b.tar.gz');
  const opa = await findOpa();
  await execa(opa, ['build', '-t', 'wasm', '-e', 'other/allow', '-r', 'x', '-o', out, dir]);
  await t.throwsAsync(PolicyEngine.load(await readBundle(out), policyData({ clusters: {}, admins: {} })), { message: /no entrypoint fencing\/decision/ });
});

test('an evaluation error inside wasm is a deny, not an exception', async (t) => {
  // Two complete definitions that both hold are a conflict error at run time.
  const dir = tempDir();
  writeFileSync(
    join(dir, 'p.rego'),
    'package fencing\n\ndecision := {"allow": true, "reasons": []} if input.a\n\ndecision := {"allow": false, "reasons": ["b"]} if input.b\n',
  );
  const out = join(dir, 'b.tar.gz');
  const opa = await findOpa();
  await execa(opa, ['build', '-t', 'wasm', '-e', 'fencing/decision', '-r', 'x', '-o', out, dir]);
  const engine = await PolicyEngine.load(await readBundle(out), policyData({ clusters: {}, admins: {} }));
  t.true(engine.decide({ a: true } as never).allow, 'the policy itself works');
  const d = engine.decide({ a: true, b: true } as never);
  t.false(d.allow);
  t.is(d.reasons[0]?.code, 'policy_error');
  t.regex(d.reasons[0]?.detail ?? '', /^evaluation failed/);
});

test('the revision is a hash of the Rego sources; a bundle records it and the wasm sha256', async (t) => {
  const dir = tempDir();
  mkdirSync(join(dir, 'p'));
  cpSync(POLICIES_DIR, join(dir, 'p'), { recursive: true });
  const r1 = sourceRevision(join(dir, 'p'));
  t.is(r1, sourceRevision(), 'same text, same revision');
  writeFileSync(join(dir, 'p', 'fencing_test.rego'), '# tests do not change the revision\n', { flag: 'a' });
  t.is(sourceRevision(join(dir, 'p')), r1);
  writeFileSync(join(dir, 'p', 'fencing.rego'), '\n# a reviewer edit\n', { flag: 'a' });
  const r2 = sourceRevision(join(dir, 'p'));
  t.not(r2, r1);
  const out = join(dir, 'bundle.tar.gz');
  t.is(await buildBundle(out, join(dir, 'p')), r2);
  const b = await readBundle(out);
  t.is(b.revision, r2);
  t.regex(b.sha256, /^[0-9a-f]{64}$/);
});

test('Rego errors are reported located (FILE:LINE:COL) by checkRego', async (t) => {
  const dir = tempDir();
  writeFileSync(join(dir, 'fencing.rego'), 'package fencing\n\ndecision := x if {\n\tx := nosuchfn(1)\n}\n');
  const problems = await checkRego(dir);
  t.is(problems.length, 1);
  t.like(problems[0], { line: 4, col: 7 });
  t.regex(problems[0]?.message ?? '', /rego_type_error: undefined function nosuchfn/);
});

test('fencectl explain: exit 0 allowed, 1 denied, 2 usage; --json carries allow, reasons and the policy', async (t) => {
  const base = ['explain', '--config', 'clusters.yaml'];
  const ok = await fencectl([...base, '--as', 'blue/blue-1', '--action', 'off', '--target', 'blue-2', '--json']);
  t.is(ok.exitCode, 0, ok.stderr);
  const j = JSON.parse(ok.stdout) as { allow: boolean; reasons: unknown[]; policy: { revision: string; sha256: string } };
  t.true(j.allow);
  t.deepEqual(j.reasons, []);
  t.is(j.policy.revision, sourceRevision());

  const no = await fencectl([...base, '--as', 'red/red-a', '--action', 'off', '--target', 'blue-2', '--json']);
  t.is(no.exitCode, 1);
  t.like(JSON.parse(no.stdout), { allow: false, reasons: [{ code: 'target_not_owned', detail: 'domain blue-2 belongs to another cluster, not red' }] });

  const human = await fencectl([...base, '--as', 'blue/blue-1', '--action', 'reset', '--target', 'blue-1']);
  t.is(human.exitCode, 1);
  t.regex(human.stdout, /^DENY {2}blue\/blue-1 reset blue-1\n {2}- self_fence: /);

  for (const args of [
    [...base, '--as', 'blue', '--action', 'off', '--target', 'blue-2'],
    [...base, '--as', 'blue/blue-1', '--action', 'off', '--target', 'blue-2;id'],
    [...base, '--as', 'blue/blue-1', '--action', 'destroy', '--target', 'blue-2'],
    [...base, '--as', 'blue/blue-1', '--action', 'off'],
    [...base, '--as', 'blue/blue-1', '--action', 'off', '--target', 'blue-2', '--bogus'],
    [...base, '--as', 'blue/blue-1', '--as-admin', 'ops', '--action', 'list'],
    ['frobnicate'],
  ]) {
    const r = await fencectl(args);
    t.is(r.exitCode, 2, args.join(' '));
    t.regex(r.stderr, /fencectl/, args.join(' '));
  }
});

test('fencectl explain --all on the example: each tenant reaches exactly its own domains; an admin reads all and powers none', async (t) => {
  const matrix = async (who: string[]) => {
    const r = await fencectl(['explain', '--config', 'clusters.yaml', ...who, '--all', '--json']);
    t.is(r.exitCode, 0, r.stderr);
    const cells = (JSON.parse(r.stdout) as { decisions: { action: string; target: string; allow: boolean; codes: string[] }[] }).decisions;
    t.is(cells.length, 2 + 4 * 5);
    return cells;
  };
  const allowed = (cells: Awaited<ReturnType<typeof matrix>>) => cells.filter((c) => c.allow).map((c) => `${c.action} ${c.target}`.trim()).sort();
  // red enables status, off, reset; a node never resets or turns off itself here.
  t.deepEqual(allowed(await matrix(['--as', 'red/red-a'])), ['gethosts', 'list', 'off red-vm-b', 'reset red-vm-b', 'status red-vm-a', 'status red-vm-b']);
  const ops = await matrix(['--as-admin', 'ops']);
  t.deepEqual(allowed(ops), ['gethosts', 'list', ...['blue-1', 'blue-2', 'blue-3', 'red-vm-a', 'red-vm-b'].map((d) => `status ${d}`)]);
  t.true(ops.filter((c) => !c.allow).every((c) => c.codes.join() === 'admin_read_only'));

  // The same revision as a bundle and as Rego sources: nothing differs (exit 0).
  const same = await fencectl(['diff-policy', '--config', 'clusters.yaml', '--old', 'dist/policy/bundle.tar.gz', '--new', 'policies']);
  t.is(same.exitCode, 0, same.stderr);
  t.regex(same.stdout, /^(rego-\w+) -> \1 over .*clusters\.yaml: 578 decisions compared, 0 differ\n?$/);
});
