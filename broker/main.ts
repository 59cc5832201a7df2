#!/usr/bin/env node
// fence-broker --config FILE: the host daemon. It refuses to start unless the
// config and the policy are valid (DESIGN.md §3.2).
import { parseArgs } from 'node:util';
import { ConfigError } from './config/errors.js';
import { loadConfig } from './config/load.js';
import { loadPolicy } from './policy/load.js';

async function main(): Promise<number> {
  let configPath: string | undefined;
  try {
    configPath = parseArgs({ options: { config: { type: 'string' } }, strict: true }).values.config;
  } catch (e) {
    process.stderr.write(`fence-broker: ${(e as Error).message}\nusage: fence-broker --config FILE\n`);
    return 2;
  }
  if (!configPath) {
    process.stderr.write('usage: fence-broker --config FILE\n');
    return 2;
  }
  try {
    const config = loadConfig(configPath);
    const engine = await loadPolicy(config);
    process.stderr.write(
      `fence-broker: config ${config.file} and policy ${engine.revision} (wasm sha256 ${engine.sha256}) are valid.\n` +
        'fence-broker: the SSH front door is not built yet (issue #4), so there is nothing to serve; exiting.\n',
    );
    return 1;
  } catch (e) {
    process.stderr.write(e instanceof ConfigError ? `${e.message}\nfence-broker: refusing to start: invalid config\n` : `fence-broker: refusing to start: ${(e as Error).message}\n`);
    return 2;
  }
}

process.exitCode = await main();
