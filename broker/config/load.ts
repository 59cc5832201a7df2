// clusters.yaml → a validated Config, or every problem found, each located
// (FILE:LINE:COL). Three passes: YAML syntax (the `yaml` library, duplicate
// keys included), the published JSON Schema (ajv), then the cross-references a
// schema cannot express (crosscheck.ts). Types live in types.ts, positions and
// schema messages in locate.ts.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Ajv } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { projectPath } from '../../common/paths.js';
import { DEFAULT_BUNDLE } from '../policy/bundle.js';
import { crossCheck } from './crosscheck.js';
import { fileProblems } from './files.js';
import { ConfigError, type Located } from './errors.js';
import { Locator, schemaProblem, type Path } from './locate.js';
import type { Config, RawConfig } from './types.js';

export * from './types.js';

export const SCHEMA_PATH = projectPath('schema', 'clusters.schema.json');

let validator: ReturnType<Ajv['compile']> | undefined;
function schemaValidator(): ReturnType<Ajv['compile']> {
  if (!validator) {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as object;
    validator = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);
  }
  return validator;
}

/**
 * Reads, parses and validates a clusters.yaml, then checks the files it
 * trusts (files.ts: modes and owners, like sshd's StrictModes). Throws
 * ConfigError listing every problem found.
 */
export function loadConfig(file: string): Config {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `cannot read: ${(err as Error).message}` }], { cause: err });
  }
  const { config, loc } = parse(text, file, abs);
  const files = fileProblems(config, DEFAULT_BUNDLE);
  if (files.length) throw new ConfigError(files.map((p) => (p.key.length ? loc.key(p.key.slice(0, -1), String(p.key[p.key.length - 1]), p.message) : loc.at(0, p.message))));
  return config;
}

/** A problem about the value at `key` of a config file (say, a bundle that fails its signature), located there. */
export function locateIn(file: string, key: Path, message: string): Located {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { file, line: 1, col: 1, message };
  }
  const lines = new LineCounter();
  const loc = new Locator(file, parseDocument(text, { lineCounter: lines }), lines);
  return key.length ? loc.key(key.slice(0, -1), String(key[key.length - 1]), message) : loc.at(0, message);
}

/** As loadConfig, from text and without the file checks. `display` names the file in messages; `abs` anchors relative paths. */
export function parseConfig(text: string, display: string, abs: string = resolve(display)): Config {
  return parse(text, display, abs).config;
}

function parse(text: string, display: string, abs: string): { config: Config; loc: Locator } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true });
  const loc = new Locator(display, doc, lines);

  const syntax = [...doc.errors, ...doc.warnings];
  if (syntax.length) {
    throw new ConfigError(
      syntax.map((e) => loc.at(e.pos[0], `YAML: ${e.message.split('\n')[0] ?? e.message}`)),
    );
  }

  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) {
    throw new ConfigError([loc.at(0, 'empty file: expected the keys "broker" and "clusters"')]);
  }
  const validate = schemaValidator();
  if (!validate(raw)) {
    const problems = (validate.errors ?? [])
      .map((e) => schemaProblem(e, loc))
      .filter((p): p is Located => p !== undefined);
    throw new ConfigError(dedupe(problems));
  }
  const sha256 = createHash('sha256').update(text).digest('hex');
  return { config: { ...crossCheck(raw as RawConfig, loc, abs), sha256 }, loc };
}

function dedupe(problems: Located[]): Located[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.line}:${p.col}:${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

