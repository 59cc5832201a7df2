// Config → a ready PolicyEngine: the configured bundle, or the project's own
// (rebuilt when policies/ changed), loaded with the data derived from the config.
import { execa } from 'execa';
import type { Config } from '../config/load.js';
import type { Located } from '../config/errors.js';
import { currentBundle, findOpa, POLICIES_DIR, readBundle } from './bundle.js';
import { policyData } from './data.js';
import { PolicyEngine } from './engine.js';

export async function loadPolicy(config: Config): Promise<PolicyEngine> {
  const bundle = config.broker.policyBundle ? await readBundle(config.broker.policyBundle) : await currentBundle();
  return PolicyEngine.load(bundle, policyData(config));
}

/** `opa check --strict` of the Rego sources, as located problems (empty when clean). */
export async function checkRego(dir: string = POLICIES_DIR): Promise<Located[]> {
  const opa = await findOpa();
  const r = await execa(opa, ['check', '--strict', '--format', 'json', dir], { reject: false, env: { LC_ALL: 'C' }, timeout: 60_000 });
  if (r.exitCode === 0) return [];
  try {
    const out = JSON.parse(r.stdout || r.stderr) as { errors?: { message: string; code: string; location?: { file: string; row: number; col: number } }[] };
    return (out.errors ?? []).map((e) => ({
      file: e.location?.file ?? dir,
      line: e.location?.row ?? 1,
      col: e.location?.col ?? 1,
      message: `${e.code}: ${e.message}`,
    }));
  } catch {
    return [{ file: dir, line: 1, col: 1, message: `opa check failed: ${(r.stderr || r.stdout).trim()}` }];
  }
}
