// The one name pattern of docs/design.md §3: domains, clusters and nodes all pass it
// before they reach the policy, a toolstack argv or the guest plugin. A leading
// letter or digit means no name can be read as a command-line option.
export const NAME_PATTERN_SOURCE = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';
export const NAME_PATTERN = new RegExp(NAME_PATTERN_SOURCE);

export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && NAME_PATTERN.test(value);
}

/** Why `value` is not a valid name, or undefined when it is. */
export function nameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `expected a name (string), got ${value === null ? 'null' : typeof value}`;
  if (value.length === 0) return 'empty name';
  if (value.length > 64) return `name longer than 64 characters (${value.length})`;
  if (!NAME_PATTERN.test(value)) {
    return `${JSON.stringify(value)} does not match ${NAME_PATTERN_SOURCE}`;
  }
  return undefined;
}

/**
 * Why a name that passes the pattern is still never a tenant domain, or
 * undefined: names a toolstack reads as something else. xl and virsh take a
 * bare number as a domain id; virsh resolves a UUID (with or without dashes)
 * before a name; Domain-0 is Xen's control domain.
 */
export function reservedDomainProblem(name: string): string | undefined {
  if (/^[0-9]+$/.test(name)) return 'a bare number is a domain id to xl and virsh, not a name';
  if (/^domain-0$/i.test(name)) return "Domain-0 is Xen's control domain, never a tenant domain";
  // libvirt's UUID parser skips dashes anywhere between hex pairs, so
  // "66-08-1d-44-8fad401b89610aca60a55c87" names another domain by UUID: refuse
  // every name that is 32 hex digits once its dashes are gone.
  if (/^[0-9a-f]{32}$/i.test(name.replace(/-/g, ''))) return 'UUID-shaped (32 hex digits and dashes): virsh resolves a UUID before a name';
  return undefined;
}
