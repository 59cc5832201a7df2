// The host admin's first question: which domains does this host have, who owns
// each, who may fence it, and what does not add up? (fencectl domains)
import type { Config } from './config/load.js';
import { powerOf, type PowerState } from './fencer.js';
import type { PolicyEngine } from './policy/engine.js';
import type { DomainState } from './toolstack/toolstack.js';

export interface DomainRow {
  domain: string;
  state: PowerState | 'missing';
  raw: string;
  cluster: string | null;
  /** Member nodes (CLUSTER/NODE) the policy allows to power this domain off. */
  may_fence: string[];
  /** "unowned": running, and no cluster owns it. "missing": owned, and the host does not have it. */
  flags: ('unowned' | 'missing' | 'control')[];
}

const CONTROL_DOMAINS = new Set(['Domain-0']);

/** Pure: joins the toolstack's list with the tenancy and asks the policy who may fence what. */
export function domainRows(config: Config, engine: PolicyEngine, host: DomainState[], onlyCluster?: string): DomainRow[] {
  const owner = new Map<string, string>();
  for (const c of Object.values(config.clusters)) for (const d of c.domains) owner.set(d, c.name);
  const mayFence = (domain: string, cluster: string | undefined): string[] => {
    const c = cluster === undefined ? undefined : config.clusters[cluster];
    if (!c) return [];
    return Object.values(c.nodes)
      .filter((n) => engine.decide({ requester: { cluster: c.name, node: n.name }, action: 'off', target: domain }).allow)
      .map((n) => `${c.name}/${n.name}`);
  };
  const rows: DomainRow[] = host.map((d) => {
    const cluster = owner.get(d.name);
    const flags: DomainRow['flags'] = [];
    if (CONTROL_DOMAINS.has(d.name)) flags.push('control');
    else if (cluster === undefined && d.observed === 'running') flags.push('unowned');
    return { domain: d.name, state: powerOf(d), raw: d.raw, cluster: cluster ?? null, may_fence: mayFence(d.name, cluster), flags };
  });
  const present = new Set(host.map((d) => d.name));
  for (const [domain, cluster] of owner) {
    if (!present.has(domain)) rows.push({ domain, state: 'missing', raw: 'not on this host', cluster, may_fence: mayFence(domain, cluster), flags: ['missing'] });
  }
  return rows
    .filter((r) => onlyCluster === undefined || r.cluster === onlyCluster)
    .sort((a, b) => Number(a.cluster === null) - Number(b.cluster === null) || (a.cluster ?? '').localeCompare(b.cluster ?? '') || a.domain.localeCompare(b.domain));
}

export function formatDomainTable(rows: DomainRow[]): string {
  const head = ['DOMAIN', 'STATE', 'TOOLSTACK SAYS', 'CLUSTER', 'MAY FENCE', 'FLAGS'];
  const body = rows.map((r) => [r.domain, r.state, r.raw, r.cluster ?? '-', r.may_fence.join(',') || '-', r.flags.join(',') || '']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}
