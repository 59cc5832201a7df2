// What `fencectl check` warns about without failing (exit stays 0): keys that
// are the example config's placeholders (their private halves were discarded,
// so no guest can fence with them), and domains no node with a key stands
// for (no device fences them; `fencectl pacemaker` skips them too). Pure: the
// caller reads the example's keys.
import type { Config } from '../config/types.js';

export interface Warning {
  /** Where in clusters.yaml, as a key path. */
  key: (string | number)[];
  message: string;
}

/** The public-key blobs (base64) of every `key: "TYPE BLOB ..."` in a config text (the example's placeholders). */
export const keyBlobsIn = (text: string): Set<string> => new Set([...text.matchAll(/\bkey:\s*"?[a-z0-9-]+ ([A-Za-z0-9+/]+={0,3})/g)].map((m) => m[1] as string));

/** The cluster's domains that are no node's own domain: nobody fences them with a node key of their own. */
export function domainsWithoutNode(cluster: Config['clusters'][string]): string[] {
  const owned = new Set(Object.values(cluster.nodes).map((n) => n.domain));
  return cluster.domains.filter((d) => !owned.has(d));
}

export function configWarnings(config: Config, placeholders: ReadonlySet<string>): Warning[] {
  const out: Warning[] = [];
  const keygen = (c: string, n: string) => `fencectl keygen --cluster ${c} --node ${n}`;
  for (const c of Object.values(config.clusters)) {
    for (const n of Object.values(c.nodes)) {
      if (placeholders.has(n.key.blob)) {
        out.push({ key: ['clusters', c.name, 'nodes', n.name, 'key'], message: `warning: node ${c.name}/${n.name} has the example config's placeholder key ${n.key.fingerprint}, whose private half was discarded: make its key with \`${keygen(c.name, n.name)}\`` });
      }
    }
    for (const d of domainsWithoutNode(c)) {
      out.push({ key: ['clusters', c.name, 'domains'], message: `warning: domain ${d} of cluster ${c.name} is no node's own domain: no node with a key stands for it, so no fencing device fences it; add its node with \`${keygen(c.name, d)}\`` });
    }
  }
  for (const a of Object.values(config.admins)) {
    if (placeholders.has(a.key.blob)) out.push({ key: ['admins', a.name, 'key'], message: `warning: admin ${a.name} has the example config's placeholder key ${a.key.fingerprint}, whose private half was discarded: put the admin's own public key there` });
  }
  return out;
}
