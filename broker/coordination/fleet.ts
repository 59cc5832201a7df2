// The fleet view (fencectl fleet, fencectl domains --fleet), from what every
// broker published: pure, so it is tested directly.
import type { HostInfo } from './coordination.js';

export interface FleetHostRow {
  host_id: string;
  listen: string;
  config_digest: string;
  policy_revision: string;
  domains: number;
  at: string;
  /** config_differs / policy_differs: from what most brokers of the fleet run. */
  flags: string[];
}

export interface FleetDomainRow {
  domain: string;
  /** host_id → state there */
  hosts: Record<string, string>;
  /** on_several_hosts: running on more than one host at once. */
  flags: string[];
}

/** The most common value (ties: the smallest, so the report is stable). */
function majority(values: string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
}

export function fleetHosts(hosts: HostInfo[]): FleetHostRow[] {
  const config = majority(hosts.map((h) => h.config_digest));
  const policy = majority(hosts.map((h) => h.policy_revision));
  return hosts.map((h) => ({
    host_id: h.host_id,
    listen: h.listen,
    config_digest: h.config_digest,
    policy_revision: h.policy_revision,
    domains: Object.keys(h.domains).length,
    at: h.at,
    flags: [...(h.config_digest !== config ? ['config_differs'] : []), ...(h.policy_revision !== policy ? ['policy_differs'] : [])],
  }));
}

export function fleetDomains(hosts: HostInfo[]): FleetDomainRow[] {
  const rows = new Map<string, FleetDomainRow>();
  for (const h of hosts) {
    for (const [domain, state] of Object.entries(h.domains)) {
      const row = rows.get(domain) ?? { domain, hosts: {}, flags: [] };
      row.hosts[h.host_id] = state;
      rows.set(domain, row);
    }
  }
  for (const row of rows.values()) {
    if (Object.values(row.hosts).filter((s) => s === 'on').length > 1) row.flags.push('on_several_hosts');
  }
  return [...rows.values()].sort((a, b) => a.domain.localeCompare(b.domain));
}

const table = (head: string[], rows: string[][]): string => {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
};

export const formatFleetHosts = (rows: FleetHostRow[]): string =>
  table(['HOST', 'LISTEN', 'CONFIG', 'POLICY', 'DOMAINS', 'SEEN', 'FLAGS'], rows.map((r) => [r.host_id, r.listen, r.config_digest, r.policy_revision, String(r.domains), r.at, r.flags.join(',')]));

export const formatFleetDomains = (rows: FleetDomainRow[]): string =>
  table(['DOMAIN', 'HOSTS', 'FLAGS'], rows.map((r) => [r.domain, Object.entries(r.hosts).map(([h, s]) => `${h}(${s})`).join(' '), r.flags.join(',')]));
