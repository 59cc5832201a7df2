// Where a problem is in clusters.yaml: positions of YAML nodes, and one
// readable, located message per JSON Schema error.
import type { ErrorObject } from 'ajv';
import { isMap, isScalar, type Document, type LineCounter, type Node } from 'yaml';
import type { Located } from './errors.js';

export type Path = (string | number)[];

/** Positions of YAML nodes, for messages. */
export class Locator {
  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  at(offset: number, message: string): Located {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col, message };
  }

  get(path: Path): unknown {
    return this.doc.getIn(path);
  }

  /** The value at `path`, or the nearest ancestor that exists. */
  value(path: Path, message: string): Located {
    for (let n = path.length; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (node?.range) return this.at(node.range[0], message);
    }
    return this.at(0, message);
  }

  /** The key `key` of the mapping at `path` (falls back to the mapping itself). */
  key(path: Path, key: string, message: string): Located {
    const map = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true);
    if (isMap(map)) {
      for (const pair of map.items) {
        if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) {
          return this.at(pair.key.range[0], message);
        }
      }
    }
    return this.value(path, message);
  }
}

export const pointerToPath = (pointer: string): Path =>
  pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s));

export const where = (path: Path): string => (path.length ? path.join('.') : 'top level');

/** One readable, located message per schema error (noise from if/then dropped). */
export function schemaProblem(e: ErrorObject, loc: Locator): Located | undefined {
  const path = pointerToPath(e.instancePath);
  const at = where(path);
  // Errors inside propertyNames come twice; the propertyNames summary names the key.
  if (e.propertyName !== undefined) return undefined;
  switch (e.keyword) {
    case 'if':
      return undefined; // the failing `then` branch reports the actual problem
    case 'additionalProperties': {
      const extra = String(e.params.additionalProperty);
      return loc.key(path, extra, `unknown key "${extra}" in ${at}`);
    }
    case 'required':
      return loc.value(path, `${at} is missing required key "${String(e.params.missingProperty)}"`);
    case 'propertyNames': {
      const name = String(e.params.propertyName);
      return loc.key(path, name, `name ${JSON.stringify(name)} in ${at} must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`);
    }
    case 'pattern': {
      const last = path[path.length - 1];
      if (last === 'key') return loc.value(path, `${at}: not an OpenSSH public key line ("ssh-ed25519 AAAA... comment")`);
      if (last === 'listen' && path[1] === 'metrics') return loc.value(path, `${at}: expected 127.0.0.1:PORT, [::1]:PORT or an absolute UNIX socket path`);
      if (last === 'listen') return loc.value(path, `${at}: expected host:port, e.g. 127.0.0.1:2222`);
      return loc.value(path, `${at}: ${JSON.stringify(loc.get(path))} must match ${String(e.params.pattern)}`);
    }
    case 'enum':
      return loc.value(path, `${at}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`);
    case 'uniqueItems':
      return loc.value([...path, Number(e.params.i)], `${at}: duplicate entry (items ${e.params.j} and ${e.params.i} are equal)`);
    case 'minItems':
    case 'minProperties':
      return loc.value(path, `${at}: must not be empty`);
    default:
      return loc.value(path, `${at}: ${e.message ?? e.keyword}`);
  }
}

