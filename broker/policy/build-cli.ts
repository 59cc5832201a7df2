#!/usr/bin/env node
// `npm run build:policy`: (re)builds dist/policy/bundle.tar.gz when policies/ changed.
import { currentBundle, DEFAULT_BUNDLE } from './bundle.js';

try {
  const b = await currentBundle();
  process.stdout.write(`policy bundle ${DEFAULT_BUNDLE}: revision ${b.revision}, wasm sha256 ${b.sha256}\n`);
} catch (err) {
  process.stderr.write(`build:policy: ${(err as Error).message}\n`);
  process.exit(1);
}
