// Identity from the transport (docs/design.md §3.1): the SSH key a client proved it
// holds maps to exactly one node or admin of clusters.yaml. Nothing the client
// writes is consulted.
import ssh2 from 'ssh2';
import type { Config } from '../config/load.js';

export type Identity =
  | { kind: 'node'; cluster: string; node: string; domain: string; fingerprint: string }
  | { kind: 'admin'; admin: string; fingerprint: string };

interface Entry {
  identity: Identity;
  key: ssh2.ParsedKey;
}

export class IdentityIndex {
  private readonly byBlob = new Map<string, Entry>();

  constructor(config: Config) {
    const add = (text: string, blob: string, identity: Identity) => {
      const parsed = ssh2.utils.parseKey(text);
      if (parsed instanceof Error || Array.isArray(parsed)) throw new Error(`cannot load key ${identity.fingerprint}`);
      this.byBlob.set(blob, { identity, key: parsed });
    };
    for (const c of Object.values(config.clusters)) {
      for (const n of Object.values(c.nodes)) {
        add(n.key.text, n.key.blob, { kind: 'node', cluster: c.name, node: n.name, domain: n.domain, fingerprint: n.key.fingerprint });
      }
    }
    for (const a of Object.values(config.admins)) add(a.key.text, a.key.blob, { kind: 'admin', admin: a.name, fingerprint: a.key.fingerprint });
  }

  /** The identity a public key blob maps to, if any. */
  lookup(blob: Buffer): Entry | undefined {
    return this.byBlob.get(blob.toString('base64'));
  }
}
