// clusters.yaml's broker.toolstack → the executor for this host.
import type { Config } from '../config/load.js';
import { SimToolstack } from './sim.js';
import type { Toolstack } from './toolstack.js';
import { VirshToolstack } from './virsh.js';
import { XlToolstack } from './xl.js';

export function toolstackFor(config: Config): Toolstack {
  const t = config.broker.toolstack;
  const timeout = config.broker.timeouts.commandMs;
  switch (t.type) {
    case 'sim':
      return new SimToolstack(t.state, Object.values(config.clusters).flatMap((c) => c.domains));
    case 'virsh':
      return new VirshToolstack(t.uri, timeout, t.command);
    case 'xl':
      return new XlToolstack(timeout, {
        ...(t.command ? { command: t.command } : {}),
        ...(t.config_dir ? { configDir: t.config_dir } : {}),
        ...(t.domain_configs ? { domainConfigs: t.domain_configs } : {}),
      });
  }
}
