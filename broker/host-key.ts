#!/usr/bin/env node
// host-key --config FILE: creates the broker's ed25519 host key at the config's
// broker.host_key when it is missing, as `ssh-keygen -A` does for sshd (0600,
// owned by whoever runs it: root at install), and prints its fingerprint.
// install.sh runs it, so keygen, pacemaker and heartbeat have the pin before
// the broker's first start; an existing key is kept as it is.
import { parseArgs } from 'node:util';
import { ConfigError } from './config/errors.js';
import { loadConfig } from './config/load.js';
import { loadOrCreateHostKey } from './doors/ssh.js';

const USAGE = 'usage: host-key.js --config FILE';

function main(): number {
  let config: string | undefined;
  try {
    config = parseArgs({ options: { config: { type: 'string' } }, strict: true }).values.config;
  } catch (e) {
    process.stderr.write(`host-key: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!config) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  try {
    const path = loadConfig(config).broker.hostKey;
    const key = loadOrCreateHostKey(path);
    process.stdout.write(`host key ${path} ${key.created ? 'created (ed25519, 0600)' : 'kept'}: ${key.fingerprint}\n`);
    return 0;
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
    process.stderr.write(e instanceof ConfigError ? `${e.message}\n` : `host-key: ${(e as Error).message}${cause}\n`);
    return e instanceof ConfigError ? 2 : 1;
  }
}

process.exitCode = main();
