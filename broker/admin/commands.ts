// The option tables of fencectl and fence-broker (admin/cli.ts derives their
// parsing, --help and man pages from these). Exit statuses are as
// docs/admin/fencectl.md has them: 0 ok / allowed / no change, 1 invalid /
// denied / not reloaded / decisions differ, 2 usage or config error.
import { readFileSync } from 'node:fs';
import { DEFAULT_CONFIG } from '../../common/prefix.js';
import { NODE_KEY_PATH } from '../../common/node-key.js';
import { projectPath } from '../../common/paths.js';
import { VERBS } from '../../common/wire.js';
import type { CommandSpec, OptionSpec, ProgramSpec } from './cli.js';

const config: OptionSpec = { name: 'config', type: 'string', value: 'FILE', default: DEFAULT_CONFIG, help: 'The tenancy, clusters.yaml' };
const json: OptionSpec = { name: 'json', type: 'boolean', help: 'Print JSON instead of text' };
const cluster: OptionSpec = { name: 'cluster', type: 'string', value: 'CLUSTER', required: true, help: 'The tenant cluster, as named in clusters.yaml' };
const identityFile: OptionSpec = { name: 'identity-file', type: 'string', value: 'PATH', default: NODE_KEY_PATH, help: "Where each node keeps its private key (keygen's key, installed 0600); an absolute path" };
const ip: OptionSpec = {
  name: 'ip',
  type: 'string',
  value: 'ADDR',
  help: "The broker's address as the nodes reach it; needed when broker.listen is a wildcard (0.0.0.0 or ::). Default: the host of broker.listen",
};

const usageOrConfig = '2 usage or config error';

/** fence_virt's serial port in the guest, as the channel snippet's target port 1 appears there. */
export const SERIAL_DEVICE = '/dev/ttyS1';

export const FENCECTL: ProgramSpec = {
  name: 'fencectl',
  summary: "The host admin's and security reviewer's tool for fence-broker: validate and reload the tenancy, explain and compare policy decisions, make node keys and the tenants' cluster configuration.",
  description: [
    'Every command reads the tenancy from --config, by default /etc/fence-broker/clusters.yaml (under the install prefix for an install elsewhere). Errors name what was wrong and where (FILE:LINE:COL for the config) and change nothing.',
  ],
  commands: [
    {
      name: 'check',
      summary: 'Validate clusters.yaml and the policy bundle with its data',
      description: [
        "Checks the schema, names, keys, duplicate ownership, files' modes, and that the policy bundle loads with the config's data. Warns, without failing, about placeholder keys (the example config's) and about domains that no node with a key has as its own (no fencing device fences them).",
      ],
      options: [config],
      exit: ['0 valid (warnings included)', '1 problems, printed as FILE:LINE:COL: message', '2 usage'],
    },
    {
      name: 'reload',
      summary: 'Validate as check does, then make the running daemon load the config and policy',
      description: [
        "Signals the daemon (the pid in broker.pid_file, else systemd's fence-broker.service) and reads its answer from the audit log. Nothing is signalled when the config is not valid.",
      ],
      options: [config, { name: 'timeout', type: 'string', value: 'SECONDS', default: '30', help: "How long to wait for the daemon's reload event in the audit log" }],
      exit: ['0 the daemon runs the validated config and policy', '1 invalid (not signalled), refused by the daemon, no daemon, or no answer within --timeout', '2 usage'],
    },
    {
      name: 'status',
      summary: 'Ask the running daemon its pid, uptime, config, policy, connections, fences in flight, race marks and storm counts',
      description: ['Asks over a local socket; no network port.'],
      options: [
        config,
        { name: 'socket', type: 'string', value: 'PATH', help: "The daemon's status socket (default: broker.status_socket of --config)" },
        json,
      ],
      exit: ['0 the daemon answered', '1 no daemon answered', '2 usage'],
    },
    {
      name: 'domains',
      summary: 'Every domain the toolstack knows, with its state, owning cluster and who may power it off',
      description: [
        'Flags running domains no cluster owns (unowned) and owned domains this host lacks (missing). With --fleet, every domain the fleet published, with the hosts that run it (etcd coordination only).',
      ],
      options: [config, { ...cluster, required: false, help: 'Only the domains of this cluster' }, { name: 'fleet', type: 'boolean', help: 'The whole fleet, from the shared store' }, json],
      exit: ['0 listed', '1 the toolstack or the store failed', usageOrConfig],
    },
    {
      name: 'fleet',
      summary: 'Every broker that published itself in the shared store (etcd coordination only)',
      description: ['Flags the brokers whose config digest or policy revision differs from what most run.'],
      options: [config, json],
      exit: ['0 the fleet agrees', '1 some broker differs, or the store failed', '2 usage (local coordination) or config error'],
    },
    {
      name: 'keygen',
      summary: "Make a new ed25519 key pair for a node; print its clusters.yaml entry and the node's plugin parameters",
      description: [
        `Writes DIR/NODE (0600, never over an existing file) and DIR/NODE.pub; a missing DIR is created 0700. The config is only read: the printed line goes under clusters.CLUSTER.nodes (it replaces a node's existing key, such as the example's placeholder), then check and reload. On the node, the key goes to ${NODE_KEY_PATH}. Needs the host key (install.sh makes it), whose pin it prints.`,
      ],
      options: [
        config,
        cluster,
        { name: 'node', type: 'string', value: 'NODE', required: true, help: 'The node the key is for' },
        { name: 'out', type: 'string', value: 'DIR', default: '.', help: 'Where to write the key pair' },
        { name: 'fence-virt', type: 'boolean', help: "Make the node's own fence_virt/fence_xvm key (512 random bytes under broker.fence_virt.key_dir) instead of its SSH key" },
        { name: 'force', type: 'boolean', help: "With --fence-virt: replace the node's existing key" },
      ],
      exit: ['0 written', '1 --out cannot be created', '2 usage (bad name, file exists, no host key yet) or config error'],
    },
    {
      name: 'fingerprint',
      summary: "Print the broker's host key pin (SHA256:...), as the nodes' host_key_fingerprint",
      description: ['The host key is broker.host_key; install.sh creates it, as does the first start.'],
      options: [config],
      exit: ['0 printed', '2 no host key yet, usage or config error'],
    },
    {
      name: 'pacemaker',
      summary: "A tenant's Pacemaker fencing: one stonith device (fence_broker, fence_xvm or fence_virt) per node, kept off the node it fences",
      description: [
        'Prints a CIB (for cibadmin or crm_verify), a pcs script or crmsh configure syntax. A domain that no node with a key has as its own gets no device; each such domain is named on stderr.',
      ],
      options: [
        config,
        cluster,
        { name: 'format', type: 'string', value: 'FORMAT', choices: ['cib', 'pcs', 'crm'], default: 'cib', help: 'What to print' },
        identityFile,
        ip,
        { name: 'agent', type: 'string', value: 'AGENT', choices: ['fence_broker', 'fence_xvm', 'fence_virt'], default: 'fence_broker', help: 'The fence agent the devices use: the SSH plugin, or the stock fence_xvm/fence_virt clients through the fence_virt doors' },
        { name: 'key-file', type: 'string', value: 'PATH', default: '/etc/cluster/fence_xvm.key', help: "With fence_xvm or fence_virt: where each node keeps its fence_virt key (the clients' -k)" },
        {
          name: 'serial',
          type: 'string',
          value: 'DEVICE',
          bare: SERIAL_DEVICE,
          help: "With fence_virt: the nodes ask through their own serial channels (broker.fence_virt.channels, see `fencectl channel`), so the devices carry serial_device DEVICE (in mode vmchannel: the guestfwd address and port) and no key",
        },
      ],
      exit: ['0 printed', '2 usage (unknown cluster, a bad --identity-file or --key-file, no host key yet, a wildcard listen address without --ip; for fence_xvm/fence_virt: broker.fence_virt or its multicast listener off, or only wildcard TCP listeners; --serial without --agent fence_virt, a DEVICE that is no /dev path, or broker.fence_virt.channels off) or config error'],
    },
    {
      name: 'channel',
      summary: "A node's serial channel: the domain XML snippet for virsh attach-device --config, the guest's fence_virt command line, and what to check next",
      description: [
        "The channel is a UNIX socket that QEMU binds at DIR/DOMAIN.sock (broker.fence_virt.channels.dir) and the guest sees as its serial port ttyS1. The broker finds it in the running domain's XML and takes every request on it as the domain's own node's: the hypervisor proves who asks, so the node needs no key and no network. In mode vmchannel the snippet is a guestfwd <channel> instead. The config is only read; nothing is attached or changed.",
      ],
      options: [
        config,
        { ...cluster, required: false, help: "The node's cluster; needed only when nodes of several clusters have that name" },
        { name: 'xml', type: 'boolean', help: 'Print only the XML snippet, for the file virsh attach-device reads' },
      ],
      operands: [{ value: 'NODE', help: 'The node, as named under clusters.CLUSTER.nodes' }],
      exit: ['0 printed', '2 usage (a bad node name, a node of no cluster or of several, broker.fence_virt.channels not configured, a socket path too long for a UNIX socket) or config error'],
    },
    {
      name: 'heartbeat',
      summary: "A tenant's Heartbeat fencing: the stonith_host line for ha.cf",
      description: ["With --face sh, also the known_hosts line the sh face pins the host key with (in the identity file's .known_hosts)."],
      options: [
        config,
        cluster,
        { name: 'face', type: 'string', value: 'FACE', choices: ['node', 'sh'], default: 'node', help: 'The cluster-glue plugin the nodes run: Node.js, or POSIX sh over OpenSSH' },
        { ...identityFile, help: `${identityFile.help}, without spaces` },
        ip,
      ],
      exit: ['0 printed', '2 usage (unknown cluster, no host key yet, a wildcard listen address without --ip) or config error'],
    },
    {
      name: 'explain',
      summary: 'What the policy decides for one request, with its reasons; or, with --all, for every action on every domain',
      synopsis: [
        '[--config FILE] (--as CLUSTER/NODE | --as-admin NAME) --action ACTION [--target DOMAIN] [--json]',
        '[--config FILE] (--as CLUSTER/NODE | --as-admin NAME) --all [--json]',
      ],
      description: [
        `The request is checked with the broker's own grammar first (ACTION one of ${VERBS.join(', ')}). --all shows power actions as asked by a node that lost no fence race and hit no storm limit.`,
      ],
      options: [
        config,
        { name: 'as', type: 'string', value: 'CLUSTER/NODE', help: 'Ask as this node' },
        { name: 'as-admin', type: 'string', value: 'NAME', help: 'Ask as this admin' },
        { name: 'action', type: 'string', value: 'ACTION', help: `The verb: ${VERBS.join(', ')}` },
        { name: 'target', type: 'string', value: 'DOMAIN', help: 'The domain, for status, on, off and reset' },
        { name: 'all', type: 'boolean', help: 'Every action on every domain of the config' },
        json,
      ],
      exit: ['0 allowed (--all: printed)', '1 denied', usageOrConfig],
    },
    {
      name: 'diff-policy',
      summary: 'Every decision over the config that differs between two policy revisions',
      description: ['Each revision is a bundle (.tar.gz) or a folder of Rego sources (built with opa). Fit for a CI gate on a policy change.'],
      options: [
        config,
        { name: 'old', type: 'string', value: 'BUNDLE_OR_DIR', required: true, help: 'The revision before' },
        { name: 'new', type: 'string', value: 'BUNDLE_OR_DIR', required: true, help: 'The revision after' },
        json,
      ],
      exit: ['0 no decision differs', '1 some differ', '2 usage, config error, or a revision that cannot be read or built'],
    },
  ],
};

export const VERSION_OPTION: OptionSpec = { name: 'version', short: 'V', type: 'boolean', help: 'Print the release and exit' };

const DAEMON_SUMMARY = 'The host daemon through which guest HA clusters fence their virtual machines over SSH, each only its own domains.';
const DAEMON_DESCRIPTION = [
  'Refuses to start unless the config and the policy are valid. SIGHUP reloads clusters.yaml and the policy (a bad reload keeps the running ones) and reopens the audit log; SIGTERM and SIGINT stop it. Under a Type=notify systemd unit it reports ready, reloading and stopping.',
];

export const FENCE_BROKER: ProgramSpec = {
  name: 'fence-broker',
  summary: DAEMON_SUMMARY,
  description: DAEMON_DESCRIPTION,
  commands: [
    {
      name: '',
      summary: DAEMON_SUMMARY,
      description: DAEMON_DESCRIPTION,
      options: [
        { ...config, default: undefined, required: true },
        { name: 'log-format', type: 'string', value: 'FORMAT', choices: ['text', 'json'], help: 'The log on stderr: text with ISO times, or pino JSON lines. Default: text when stderr is a terminal' },
        VERSION_OPTION,
      ],
      exit: ['0 stopped by SIGTERM or SIGINT', '2 usage, invalid config or policy, or a resource it cannot have (listen address, audit log, pid file)'],
    },
  ],
};

/** `fencectl --version`, `fence-broker --version`: the release's version, and its commit when installed from one. */
export function versionText(prog: string): string {
  const pkg = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version?: string };
  let commit = '';
  try {
    // RELEASE (npm run package) says which commit and policy it was built from.
    commit = readFileSync(projectPath('RELEASE'), 'utf8').split('\n').slice(1).filter(Boolean).join('\n');
  } catch {
    // A checkout: package.json's version says it.
  }
  return `${prog === 'fence-broker' ? prog : `${prog} (fence-broker)`} ${pkg.version ?? 'unknown'}\n${commit ? commit + '\n' : ''}`;
}
