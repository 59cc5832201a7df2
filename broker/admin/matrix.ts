// The reviewer's view of the policy over a whole config: every action on every
// domain for one requester (fencectl explain --all), and every decision that
// differs between two policy revisions (fencectl diff-policy). Pure: engines
// and config in, rows out; the CLI prints them.
import type { Config } from '../config/load.js';
import type { Decision, DecisionInput, PolicyEngine, Requester } from '../policy/engine.js';

/** The verbs in the wire grammar's order: listings first, then actions on a domain. */
export const LIST_ACTIONS = ['gethosts', 'list'] as const;
export const TARGET_ACTIONS = ['status', 'on', 'off', 'reset'] as const;
const POWER: ReadonlySet<string> = new Set(['on', 'off', 'reset']);

export interface Cell {
  action: string;
  /** '' for list/gethosts. */
  target: string;
  allow: boolean;
  /** Reason codes, sorted; [] when allowed. */
  codes: string[];
  reasons: Decision['reasons'];
}

/** Every action of one requester: list/gethosts once, the others on each domain in `domains`. */
export function matrixOf(engine: PolicyEngine, requester: Requester, domains: string[], facts: Pick<DecisionInput, 'requester_fenced' | 'recent_fences'> = {}): Cell[] {
  const cells: Cell[] = [];
  const add = (action: string, target: string): void => {
    const d = engine.decide({ requester, action, ...(target ? { target } : {}), ...(POWER.has(action) ? facts : {}) });
    cells.push({ action, target, allow: d.allow, codes: d.allow ? [] : [...new Set(d.reasons.map((r) => r.code))].sort(), reasons: d.reasons });
  };
  for (const a of LIST_ACTIONS) add(a, '');
  for (const target of domains) for (const a of TARGET_ACTIONS) add(a, target);
  return cells;
}

/** The config's domains, sorted. */
export const domainsOf = (config: Config): string[] => Object.values(config.clusters).flatMap((c) => c.domains).sort();

/**
 * The matrix as a table: one row per domain (and one for the listings), one
 * column per action; a cell is "allow" or the deny codes.
 */
export function formatMatrix(cells: Cell[]): string {
  const actions = [...LIST_ACTIONS, ...TARGET_ACTIONS];
  const byRow = new Map<string, Map<string, Cell>>();
  for (const c of cells) {
    const row = c.target || '(no target)';
    if (!byRow.has(row)) byRow.set(row, new Map());
    byRow.get(row)!.set(c.action, c);
  }
  const text = (c: Cell | undefined): string => (c === undefined ? '' : c.allow ? 'allow' : c.codes.join(','));
  const rows = [...byRow].map(([row, m]) => [row, ...actions.map((a) => text(m.get(a)))]);
  const header = ['domain', ...actions];
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((s, i) => s.padEnd(width[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** One requester in a diff: who, and the facts a power request carries. */
export interface Probe {
  requester: Requester;
  facts: Pick<DecisionInput, 'requester_fenced' | 'recent_fences'>;
}

export const requesterText = (r: Requester): string => ('admin' in r ? `admin ${r.admin}` : `${r.cluster}/${r.node}`);

/**
 * Everyone a decision can be asked for over this config: each node and admin,
 * plus a sample of names the config does not know (an unknown cluster, an
 * unknown node of each cluster, an unknown admin). Nodes are probed twice for
 * power: as they are, and having lost a fence race; clusters with a storm limit
 * also at their limit.
 */
export function probesOf(config: Config): Probe[] {
  const probes: Probe[] = [];
  for (const c of Object.values(config.clusters)) {
    const nodes = [...Object.keys(c.nodes).sort(), `${c.name}-not-a-node`];
    for (const node of nodes) {
      const requester = { cluster: c.name, node };
      probes.push({ requester, facts: { requester_fenced: false, recent_fences: 0 } });
      probes.push({ requester, facts: { requester_fenced: true, recent_fences: 0 } });
      if (c.limits) probes.push({ requester, facts: { requester_fenced: false, recent_fences: c.limits.fencesPerWindow } });
    }
  }
  probes.push({ requester: { cluster: 'no-such-cluster', node: 'no-such-node' }, facts: {} });
  for (const admin of [...Object.keys(config.admins).sort(), 'no-such-admin']) probes.push({ requester: { admin }, facts: {} });
  return probes;
}

/** The config's domains and a sample of names no cluster owns. */
export const targetsOf = (config: Config): string[] => [...domainsOf(config), 'no-such-domain', 'unowned-0', 'a.b:c_d-1'];

export interface Change {
  requester: string;
  facts: Probe['facts'];
  action: string;
  target: string;
  old: { allow: boolean; codes: string[] };
  new: { allow: boolean; codes: string[] };
}

/** Every decision that differs (allowed or the deny codes) between `before` and `after`. */
export function diffDecisions(before: PolicyEngine, after: PolicyEngine, config: Config): { compared: number; changes: Change[] } {
  const targets = targetsOf(config);
  const changes: Change[] = [];
  let compared = 0;
  for (const p of probesOf(config)) {
    const a = matrixOf(before, p.requester, targets, p.facts);
    const b = matrixOf(after, p.requester, targets, p.facts);
    a.forEach((x, i) => {
      const y = b[i]!;
      compared++;
      if (x.allow === y.allow && x.codes.join() === y.codes.join()) return;
      changes.push({ requester: requesterText(p.requester), facts: p.facts, action: x.action, target: x.target, old: { allow: x.allow, codes: x.codes }, new: { allow: y.allow, codes: y.codes } });
    });
  }
  return { compared, changes };
}

const verdict = (v: { allow: boolean; codes: string[] }): string => (v.allow ? 'allow' : `deny(${v.codes.join(',')})`);

const factsText = (f: Probe['facts']): string =>
  [f.requester_fenced ? 'race lost' : '', f.recent_fences ? `${f.recent_fences} recent fences` : ''].filter(Boolean).join(', ');

export function formatChanges(changes: Change[]): string {
  return changes
    .map((c) => {
      const facts = factsText(c.facts);
      return `${c.requester} ${c.action}${c.target ? ' ' + c.target : ''}${facts ? ` [${facts}]` : ''}: ${verdict(c.old)} -> ${verdict(c.new)}`;
    })
    .join('\n');
}
