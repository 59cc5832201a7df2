#!/usr/bin/env node
// `npm run policy:table`: regenerates the checklist table in policies/README.md
// from fencing.rego's METADATA. With --check (CI) it writes nothing and exits 1
// when the table is stale or a deny rule lacks its code, title or test.
import { readFileSync, writeFileSync } from 'node:fs';
import { currentChecklist, README, renderTable, withTable } from './checklist.js';

const checkOnly = process.argv.includes('--check');
try {
  const { rows, problems } = await currentChecklist();
  for (const p of problems) process.stderr.write(`policy:table: ${p}\n`);
  const before = readFileSync(README, 'utf8');
  const after = withTable(before, renderTable(rows));
  if (checkOnly) {
    if (after !== before) process.stderr.write(`policy:table: ${README} is stale: run \`npm run policy:table\`\n`);
    process.exitCode = problems.length || after !== before ? 1 : 0;
  } else {
    if (after !== before) writeFileSync(README, after);
    process.stdout.write(`${README}: ${rows.length} deny rules${after !== before ? ' (table rewritten)' : ' (up to date)'}\n`);
    process.exitCode = problems.length ? 1 : 0;
  }
} catch (err) {
  process.stderr.write(`policy:table: ${(err as Error).message}\n`);
  process.exitCode = 2;
}
