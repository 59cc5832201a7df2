// The reviewer's checklist, derived from the Rego's own METADATA (opa inspect
// -a): one row per deny rule with its reason code. The table in
// policies/README.md is generated from it, so the guide cannot drift from the
// rules; the same pass refuses a deny rule without a code, title or test.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { findOpa, POLICIES_DIR } from './bundle.js';

export interface ChecklistRow {
  rule: string;
  code: string;
  title: string;
  description: string;
  /** Where the rule is, file:line. */
  at: string;
}

interface InspectAnnotation {
  path: { value: string }[];
  location: { file: string; row: number };
  annotations: { scope?: string; title?: string; description?: string; entrypoint?: boolean; custom?: Record<string, unknown> };
}

const BEGIN = '<!-- checklist:begin (generated from fencing.rego METADATA by `npm run policy:table`; do not edit) -->';
const END = '<!-- checklist:end -->';
export const README = join(POLICIES_DIR, 'README.md');

/** The annotations of every rule under policies/ (tests excluded), as OPA reads them. */
export async function inspectAnnotations(dir: string = POLICIES_DIR): Promise<InspectAnnotation[]> {
  const opa = await findOpa();
  const r = await execa(opa, ['inspect', '-a', '--format', 'json', dir], { reject: false, env: { LC_ALL: 'C' }, timeout: 60_000 });
  if (r.exitCode !== 0) throw new Error(`opa inspect -a ${dir} failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
  const all = (JSON.parse(r.stdout) as { annotations?: InspectAnnotation[] }).annotations ?? [];
  return all.filter((a) => !a.location.file.endsWith('_test.rego'));
}

const pathOf = (a: InspectAnnotation): string => a.path.map((p) => p.value).join('.');

/**
 * The rows, in file order, and every problem that makes the policy unfit to
 * review: a reasons rule without custom.code/custom.rule/title, a code used
 * twice, a code without its test_deny_<code>, no annotated entrypoint.
 */
export function checklistOf(annotations: InspectAnnotation[], testSource: string): { rows: ChecklistRow[]; problems: string[] } {
  const problems: string[] = [];
  const rows: ChecklistRow[] = [];
  const seen = new Set<string>();
  for (const a of [...annotations].sort((x, y) => x.location.row - y.location.row)) {
    const at = `${a.location.file}:${a.location.row}`;
    const code = a.annotations.custom?.code;
    if (code === undefined) continue;
    if (typeof code !== 'string' || !/^[a-z][a-z_]*$/.test(code)) problems.push(`${at}: custom.code must be a snake_case string`);
    const rule = a.annotations.custom?.rule;
    if (rule === undefined) problems.push(`${at}: ${String(code)} has no custom.rule (its place in the checklist)`);
    if (!a.annotations.title) problems.push(`${at}: ${String(code)} has no title`);
    if (seen.has(String(code))) problems.push(`${at}: reason code ${String(code)} is used by two rules`);
    seen.add(String(code));
    if (!new RegExp(`^test_deny_${String(code)} if`, 'm').test(testSource)) problems.push(`${at}: no test named test_deny_${String(code)} in fencing_test.rego`);
    rows.push({ rule: String(rule ?? '?'), code: String(code), title: a.annotations.title ?? '', description: (a.annotations.description ?? '').trim().replace(/\s+/g, ' '), at });
  }
  if (!annotations.some((a) => a.annotations.entrypoint === true && pathOf(a).endsWith('.decision'))) problems.push('no METADATA entrypoint: true on decision');
  return { rows, problems };
}

/** Unannotated `reasons contains` rules, which opa inspect does not list at all. */
export function bareReasonRules(source: string, file: string): string[] {
  const lines = source.split('\n');
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (!line.startsWith('reasons contains')) return;
    // The comment block right above the rule is its METADATA.
    let j = i;
    while (j > 0 && (lines[j - 1] ?? '').startsWith('#')) j--;
    if (!lines.slice(j, i).some((l) => /^#\s+code:/.test(l))) out.push(`${file}:${i + 1}: a reasons rule without a METADATA block naming its code`);
  });
  return out;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|');

export function renderTable(rows: ChecklistRow[]): string {
  return [
    '| rule | deny reason code | checks | why |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.rule} | \`${r.code}\` | ${cell(r.title)} | ${cell(r.description)} |`),
  ].join('\n');
}

/** README text with the generated table between its markers. */
export function withTable(readme: string, table: string): string {
  const b = readme.indexOf(BEGIN);
  const e = readme.indexOf(END);
  if (b < 0 || e < b) throw new Error(`${README}: markers ${BEGIN} … ${END} not found`);
  return `${readme.slice(0, b + BEGIN.length)}\n${table}\n${readme.slice(e)}`;
}

/** Everything the table and its checks need, read from policies/. */
export async function currentChecklist(dir: string = POLICIES_DIR): Promise<{ rows: ChecklistRow[]; problems: string[] }> {
  const source = readFileSync(join(dir, 'fencing.rego'), 'utf8');
  const tests = readFileSync(join(dir, 'fencing_test.rego'), 'utf8');
  const { rows, problems } = checklistOf(await inspectAnnotations(dir), tests);
  return { rows, problems: [...bareReasonRules(source, join(dir, 'fencing.rego')), ...problems] };
}
