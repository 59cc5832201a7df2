#!/bin/bash
# One Heartbeat v1 node (crm no) for tests, run as root as the first process of
#   ip netns exec NS unshare --pid --mount --uts --fork --propagation private --mount-proc
# so that its network (a veth on the test's bridge), hostname, state
# (/var/lib/heartbeat, /run), configuration (/etc/ha.d) and the plugin it
# finds (/usr/lib/stonith/plugins/external, an overlay) are its own. Heartbeat
# daemonizes; being PID 1 of the namespace, this script takes every process of
# the node with it when it is killed: that is how a test makes a node die.
#   heartbeat-node.sh DIR NODENAME PLUGIN [no-node]
# DIR holds ha.d/ (ha.cf, authkeys, haresources, resource.d/), laid over the
# packaged /etc/ha.d, and etc/ (etc/fence-broker/: the node's key), laid over
# /etc; it receives the logs. With no-node, this
# node has no Node.js: /dev/null is bound over the node binary (the sh face).
set -euo pipefail
dir=$1 node=$2 plugin=$3 hide=${4:-}
hostname "$node"
ip link set lo up
for d in /var/lib/heartbeat /run /dev/shm /var/lib/pacemaker; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /var/lib/heartbeat/{ccm,crm,cores/hacluster,cores/root,cores/nobody} /run/heartbeat/{ccm,crm,dopd} /run/crm /run/lock
chown -R hacluster:haclient /var/lib/heartbeat/ccm /var/lib/heartbeat/crm /run/heartbeat /run/crm
mkdir -p "$dir/etc" "$dir/etc-work" "$dir/ha.d-work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$dir/etc,workdir=$dir/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/etc/ha.d,upperdir=$dir/ha.d,workdir=$dir/ha.d-work" /etc/ha.d
up=$dir/ovl-external
mkdir -p "$up/upper" "$up/work"
mount -t overlay overlay -o "lowerdir=/usr/lib/stonith/plugins/external,upperdir=$up/upper,workdir=$up/work" /usr/lib/stonith/plugins/external
# Heartbeat locks itself in memory when it may.
ulimit -l unlimited || true
cp "$plugin" /usr/lib/stonith/plugins/external/fence-broker
if [ "$hide" = no-node ]; then
  mount --bind /dev/null "$(command -v node)"
  if node -e 0 2>/dev/null; then echo "node still runs on $node" >&2; exit 1; fi
fi
chmod 0755 /usr/lib/stonith/plugins/external/fence-broker
/usr/libexec/heartbeat/heartbeat >>"$dir/heartbeat.out" 2>&1
echo "node $node up" >&2
trap '/usr/libexec/heartbeat/heartbeat -k >>"$dir/heartbeat.out" 2>&1 || true; exit 0' TERM INT
# PID 1 of the namespace: stay, reaping, until told to go.
while :; do sleep 1 & wait $! || true; done
