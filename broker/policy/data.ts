// clusters.yaml → the policy's data document: a keyed index so that every
// lookup in fencing.rego is O(1) whatever the number of domains (docs/design.md §7).
import type { Config } from '../config/load.js';

export interface PolicyData {
  clusters: Record<
    string,
    {
      nodes: Record<string, { domain: string }>;
      actions: Record<string, true>;
      allow_self_off: boolean;
      domains: string[];
      limits?: { fences_per_window: number; window: number };
    }
  >;
  domains: Record<string, { cluster: string }>;
  admins: Record<string, Record<string, never>>;
}

export function policyData(config: Pick<Config, 'clusters' | 'admins'>): PolicyData {
  const data: PolicyData = { clusters: {}, domains: {}, admins: {} };
  for (const c of Object.values(config.clusters)) {
    const nodes: PolicyData['clusters'][string]['nodes'] = {};
    for (const n of Object.values(c.nodes)) nodes[n.name] = { domain: n.domain };
    data.clusters[c.name] = {
      nodes,
      actions: Object.fromEntries(c.actions.map((a) => [a, true] as const)),
      allow_self_off: c.allowSelfOff,
      domains: [...c.domains].sort(),
      ...(c.limits ? { limits: { fences_per_window: c.limits.fencesPerWindow, window: c.limits.windowMs / 1000 } } : {}),
    };
    for (const d of c.domains) data.domains[d] = { cluster: c.name };
  }
  for (const a of Object.keys(config.admins)) data.admins[a] = {};
  return data;
}
