// fencectl channel: what the host admin adds to a node's domain for the serial
// channel door (docs/doors/fence-virt.md), and what the guest then runs. Pure:
// the caller has found the node and read the config.
//
// The socket is named DIR/DOMAIN.sock by convention only: the broker takes
// whatever path the domain's XML gives, as long as it lies directly inside DIR.
// Facts from fence_virt (fence-agents agents/virt): in serial mode the guest
// opens /dev/ttyS1 by -D; in vmchannel mode it connects by TCP to QEMU's
// guestfwd address, 10.0.2.179 port 1229 by default (-A, -p).
import { posix } from 'node:path';
import { shellWord } from './pacemaker.js';

/** Linux's sun_path holds 108 bytes, its terminating NUL included. */
export const MAX_SOCKET_PATH = 107;

/** fence_virt's vmchannel defaults, its -A and -p: the guestfwd address the snippet gives. */
export const CHANNEL_ADDRESS = '10.0.2.179';
export const CHANNEL_PORT = 1229;

export type ChannelMode = 'serial' | 'vmchannel';

export interface ChannelPlan {
  cluster: string;
  node: string;
  domain: string;
  mode: ChannelMode;
  /** DIR/DOMAIN.sock */
  socket: string;
  /** The guest's serial device (serial mode). */
  device: string;
}

export const socketPath = (dir: string, domain: string): string => posix.join(dir, `${domain}.sock`);

/** Why the socket cannot be bound at that path, or undefined. */
export function socketPathProblem(path: string): string | undefined {
  const bytes = Buffer.byteLength(path);
  return bytes > MAX_SOCKET_PATH ? `the socket path ${path} is ${bytes} bytes, longer than a UNIX socket path can be (${MAX_SOCKET_PATH}): choose a shorter broker.fence_virt.channels.dir` : undefined;
}

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The device element for `virsh attach-device --config`: a serial port whose
 * host side is a UNIX socket QEMU binds (the broker connects to it). Target
 * port 1 is the guest's second serial port, ttyS1, fence_virt's default
 * device; port 0 stays the console.
 */
export function channelXml(mode: ChannelMode, socket: string): string {
  const source = `  <source mode='bind' path='${xmlAttr(socket)}'/>`;
  return mode === 'serial'
    ? ["<serial type='unix'>", source, "  <target port='1'/>", '</serial>'].join('\n')
    : ["<channel type='unix'>", source, `  <target type='guestfwd' address='${CHANNEL_ADDRESS}' port='${CHANNEL_PORT}'/>`, '</channel>'].join('\n');
}

/** The guest's fence_virt arguments that reach the channel (before -o). */
export const guestArgs = (plan: Pick<ChannelPlan, 'mode' | 'device'>): string => (plan.mode === 'serial' ? `-D ${shellWord(plan.device)}` : `-A ${CHANNEL_ADDRESS} -p ${CHANNEL_PORT}`);

/**
 * The whole of `fencectl channel NODE`: the snippet, how to attach it, the
 * guest's side, what to check next. `configArg` is the --config the admin gave
 * (undefined for the default), repeated in the commands printed.
 */
export function channelText(plan: ChannelPlan, virsh: { command: string; uri: string }, dirExists: boolean, configArg?: string): string {
  const file = `${plan.domain}-channel.xml`;
  const dir = posix.dirname(plan.socket);
  const fv = `fence_virt ${guestArgs(plan)}`;
  const virshLine = [virsh.command, '-c', virsh.uri, 'attach-device', plan.domain, file, '--config'].map(shellWord).join(' ');
  const what =
    plan.mode === 'serial'
      ? `a serial port: its host side is the socket ${plan.socket}, the guest sees ${plan.device}.`
      : `a guestfwd channel: the guest's TCP connections to ${CHANNEL_ADDRESS}:${CHANNEL_PORT} go into the socket ${plan.socket}.`;
  // The command first: fencectl reads its first word as the command.
  const fencectl = (cmd: string, ...rest: string[]) => ['fencectl', cmd, ...(configArg === undefined ? [] : ['--config', configArg]), ...rest].map(shellWord).join(' ');
  const lines = [
    `node ${plan.node} of cluster ${plan.cluster} runs in domain ${plan.domain}.`,
    `Its channel (broker.fence_virt.channels, mode ${plan.mode}) is ${what}`,
    '',
    `1. On this host, add it to the domain's definition: save the snippet as ${file}`,
    `   (\`${fencectl('channel', '--cluster', plan.cluster, '--xml', plan.node)} > ${shellWord(file)}\`),`,
    '',
    ...channelXml(plan.mode, plan.socket)
      .split('\n')
      .map((l) => `   ${l}`),
    '',
    '   then attach it:',
    '',
    `   ${virshLine}`,
    '',
    `   --config changes the persistent definition only: the ${plan.mode === 'serial' ? 'port' : 'channel'} appears at the domain's next start from off`,
    `   (virsh shutdown ${shellWord(plan.domain)}, then virsh start ${shellWord(plan.domain)}); a reboot inside the guest keeps the old hardware.`,
    ...(plan.mode === 'serial'
      ? ['   If the domain already has a serial port 1, give the snippet a free target port N and use /dev/ttySN in the guest.']
      : ["   Check that the guest can reach that address: libvirt 9.0 gives a guestfwd channel a user-mode network with no guest NIC on it (prefer mode serial)."]),
    ...(dirExists ? [] : [`   ${dir} does not exist on this host yet: QEMU binds the socket but does not make its folder; create it (root, 0700) before the domain starts.`]),
    '',
    `2. In the guest (fence_virt, from the fence-virt package):`,
    '',
    `   ${fv} -o list`,
    '',
    `   lists the domains cluster ${plan.cluster} may act on; \`${fv} -o status -n DOMAIN\` asks one domain's state.`,
    ...(plan.mode === 'serial' ? [`   ${plan.device} must carry no login (no getty): \`systemctl mask serial-getty@${posix.basename(plan.device)}.service\`.`] : []),
    '',
    '3. Then:',
    `   - \`${fencectl('status')}\`: the door fence_virt/serial counts the channels it is connected to;`,
    `   - the audit log: every request on the channel is one line with door fence_virt/serial, channel ${plan.socket} and channel_domain ${plan.domain};`,
    `   - Pacemaker's devices for the cluster: \`${fencectl('pacemaker', '--cluster', plan.cluster, '--agent', 'fence_virt', '--serial')}\`;`,
    '   - docs/tenant/fence-virt.md (the guest side) and docs/doors/fence-virt.md (the door, its bounds and audit).',
  ];
  return lines.join('\n');
}
