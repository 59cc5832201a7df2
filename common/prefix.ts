// The install prefix, and the default paths under it. install.sh writes the
// prefix it installs under (`install.sh --prefix DIR`; "/" by default) into
// INSTALL_PREFIX beside RELEASE, so a staging install's fencectl defaults to
// the staging config. A checkout has no such file: the system's paths.
import { readFileSync } from 'node:fs';
import { projectPath } from './paths.js';

function readPrefix(): string {
  const file = projectPath('INSTALL_PREFIX');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const prefix = text.trim();
  if (!prefix.startsWith('/')) throw new Error(`${file}: expected the absolute install prefix, got ${JSON.stringify(prefix)}; reinstall with install.sh`);
  // "/" → "": every default is `${INSTALL_PREFIX}/etc/...`.
  return prefix.replace(/\/+$/, '');
}

/** "" for a system install or a checkout; "/srv/stage" after install.sh --prefix /srv/stage. */
export const INSTALL_PREFIX = readPrefix();
/** Where a host keeps its tenancy when --config is not given. */
export const DEFAULT_CONFIG = `${INSTALL_PREFIX}/etc/fence-broker/clusters.yaml`;
