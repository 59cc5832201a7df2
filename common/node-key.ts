// Where a guest node keeps its key for the broker: the one default every face
// agrees on (fencectl keygen, pacemaker and heartbeat print it; the plugin's
// identity_file defaults to it). A path on the node, not under the host's
// install prefix.
export const NODE_KEY_PATH = '/etc/fence-broker/id_ed25519';
