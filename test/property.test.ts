// Property: for random valid tenancies and random requests, the wasm decision
// allows exactly when an independent model of docs/design.md's rules allows; in
// particular never for a target outside the requester's cluster. A sample is
// also evaluated by OPA's own Go evaluator (`opa eval`), which must agree.
import test from 'ava';
import fc from 'fast-check';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterConfig, Config, PowerAction } from '../broker/config/load.js';
import { currentBundle, findOpa, POLICIES_DIR } from '../broker/policy/bundle.js';
import { policyData } from '../broker/policy/data.js';
import { PolicyEngine, type Decision, type DecisionInput } from '../broker/policy/engine.js';
import { tempDir } from './helpers.js';

type Tenancy = Pick<Config, 'clusters' | 'admins'>;

const CLUSTERS = ['c0', 'c1', 'c2', 'c3'];
const DOMAINS = Array.from({ length: 12 }, (_, i) => `d${i}`);
const NODES = ['n0', 'n1', 'n2', 'n3'];
const ACTIONS = ['status', 'on', 'off', 'reset'] as const;
const VERBS = ['gethosts', 'list', ...ACTIONS, 'destroy'];
const dummyKey = { type: 'ssh-ed25519', text: '', blob: '', fingerprint: '' };

/** A valid tenancy: every domain has at most one owner; nodes' domains are owned by their cluster. */
const tenancyArb: fc.Arbitrary<Tenancy> = fc
  .record({
    owners: fc.array(fc.integer({ min: -1, max: CLUSTERS.length - 1 }), { minLength: DOMAINS.length, maxLength: DOMAINS.length }),
    nodePicks: fc.array(fc.array(fc.nat(), { minLength: 1, maxLength: NODES.length }), { minLength: CLUSTERS.length, maxLength: CLUSTERS.length }),
    actions: fc.array(fc.subarray([...ACTIONS], { minLength: 1 }), { minLength: CLUSTERS.length, maxLength: CLUSTERS.length }),
    selfOff: fc.array(fc.boolean(), { minLength: CLUSTERS.length, maxLength: CLUSTERS.length }),
    admins: fc.subarray(['ops', 'audit']),
  })
  .map(({ owners, nodePicks, actions, selfOff, admins }) => {
    const clusters: Record<string, ClusterConfig> = {};
    CLUSTERS.forEach((name, ci) => {
      const domains = DOMAINS.filter((_, di) => owners[di] === ci);
      if (domains.length === 0) return;
      const nodes: ClusterConfig['nodes'] = {};
      (nodePicks[ci] ?? []).forEach((pick, i) => {
        const node = NODES[i] as string;
        nodes[node] = { name: node, key: dummyKey, domain: domains[pick % domains.length] as string };
      });
      clusters[name] = { name, domains, nodes, actions: actions[ci] as PowerAction[], allowSelfOff: selfOff[ci] ?? false };
    });
    return { clusters, admins: Object.fromEntries(admins.map((a) => [a, { name: a, key: dummyKey }])) };
  });

/** Requests biased towards real members and their own domains, so that allows are common too. */
const requestArb = (t: Tenancy): fc.Arbitrary<DecisionInput> => {
  const members = Object.values(t.clusters).flatMap((c) => Object.keys(c.nodes).map((node) => ({ cluster: c.name, node })));
  const owned = Object.values(t.clusters).flatMap((c) => c.domains);
  return fc
    .record({
      requester: fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...members) },
        { weight: 1, arbitrary: fc.record({ cluster: fc.constantFrom(...CLUSTERS, 'cX'), node: fc.constantFrom(...NODES, 'nX') }) },
        { weight: 1, arbitrary: fc.record({ admin: fc.constantFrom('ops', 'audit', 'eve') }) },
      ),
      action: fc.constantFrom(...VERBS),
      target: fc.option(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...owned) }, { weight: 1, arbitrary: fc.constantFrom(...DOMAINS) }), {
        nil: undefined,
        freq: 4,
      }),
      // The broker's fence-race state: the requester's own domain is being or was just fenced.
      fenced: fc.boolean(),
    })
    .map(({ requester, action, target, fenced }) => ({ requester, action, ...(target === undefined ? {} : { target }), requester_fenced: fenced }));
};

/** The rules of docs/design.md §3–§4 and the foundation issue, stated independently of the Rego. */
function model(t: Tenancy, r: DecisionInput): { allow: boolean; domains?: string[] } {
  const listing = r.action === 'list' || r.action === 'gethosts';
  const targeted = (ACTIONS as readonly string[]).includes(r.action);
  const owner = r.target === undefined ? undefined : Object.values(t.clusters).find((c) => c.domains.includes(r.target as string));
  if ('admin' in r.requester) {
    if (!t.admins[r.requester.admin]) return { allow: false };
    if (listing && r.target === undefined) return { allow: true, domains: Object.values(t.clusters).flatMap((c) => c.domains).sort() };
    return { allow: r.action === 'status' && owner !== undefined };
  }
  const cluster = t.clusters[r.requester.cluster];
  const node = cluster?.nodes[r.requester.node];
  if (!cluster || !node) return { allow: false };
  // Fence race: the loser may still read, never power.
  if (r.requester_fenced && ['on', 'off', 'reset'].includes(r.action)) return { allow: false };
  if (listing) return r.target === undefined ? { allow: true, domains: [...cluster.domains].sort() } : { allow: false };
  if (!targeted || r.target === undefined) return { allow: false };
  if (owner !== cluster) return { allow: false };
  if (!cluster.actions.includes(r.action as PowerAction)) return { allow: false };
  if (r.target === node.domain) {
    if (r.action === 'on' || r.action === 'reset') return { allow: false };
    if (r.action === 'off' && !cluster.allowSelfOff) return { allow: false };
  }
  return { allow: true };
}

interface Sample {
  data: object;
  inputs: DecisionInput[];
  wasm: Decision[];
}

test('wasm decisions agree with the model on thousands of random requests; opa eval agrees on a sample', async (t) => {
  const bundle = await currentBundle();
  const samples: Sample[] = [];
  let decisions = 0;
  let allowed = 0;
  await fc.assert(
    fc.asyncProperty(tenancyArb.filter((t) => Object.keys(t.clusters).length > 0).chain((t) => fc.tuple(fc.constant(t), fc.array(requestArb(t), { minLength: 40, maxLength: 40 }))), async ([tenancy, requests]) => {
      const data = policyData(tenancy);
      const engine = await PolicyEngine.load(bundle, data);
      const wasm = requests.map((r) => engine.decide(r));
      requests.forEach((r, i) => {
        const d = wasm[i] as Decision;
        const m = model(tenancy, r);
        decisions++;
        if (d.allow) allowed++;
        if (d.allow !== m.allow) throw new Error(`wasm ${d.allow} vs model ${m.allow} for ${JSON.stringify(r)}: ${JSON.stringify(d.reasons)}`);
        if (d.allow && r.target !== undefined && 'cluster' in r.requester) {
          const owner = tenancy.clusters[r.requester.cluster];
          if (!owner?.domains.includes(r.target)) throw new Error(`allowed a target outside the cluster: ${JSON.stringify(r)}`);
        }
        if (!d.allow && d.reasons.length === 0) throw new Error(`deny without reason: ${JSON.stringify(r)}`);
        if (JSON.stringify(d.domains) !== JSON.stringify(m.domains)) throw new Error(`domains ${JSON.stringify(d.domains)} vs ${JSON.stringify(m.domains)}`);
      });
      if (samples.length < 12) samples.push({ data, inputs: requests, wasm });
    }),
    { numRuns: 150 },
  );
  t.is(decisions, 150 * 40);
  t.true(allowed > decisions / 20, `enough allowed cases to mean something (${allowed}/${decisions})`);
  t.true(allowed < decisions, 'and denied ones');

  // The same cases through OPA's Go evaluator, one `opa eval` per tenancy.
  const opa = await findOpa();
  const dir = tempDir();
  let compared = 0;
  for (const [i, s] of samples.entries()) {
    const dataFile = join(dir, `data-${i}.json`);
    const inputFile = join(dir, `input-${i}.json`);
    writeFileSync(dataFile, JSON.stringify(s.data));
    writeFileSync(inputFile, JSON.stringify({ cases: s.inputs }));
    const r = await execa(opa, [
      'eval', '--format', 'json', '--ignore', '*_test.rego', '-d', POLICIES_DIR, '-d', dataFile, '-i', inputFile,
      '[d | some c in input.cases; d := data.fencing.decision with input as c]',
    ], { env: { LC_ALL: 'C' } });
    const go = (JSON.parse(r.stdout) as { result: { expressions: { value: Decision[] }[] }[] }).result[0]?.expressions[0]?.value;
    t.deepEqual(go, s.wasm, `tenancy ${i}`);
    compared += go?.length ?? 0;
  }
  t.is(compared, samples.length * 40);
  t.log(`${decisions} wasm decisions (${allowed} allowed) matched the model; ${compared} matched opa eval`);
});
