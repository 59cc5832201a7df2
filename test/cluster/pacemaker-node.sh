#!/bin/bash
# One Pacemaker + corosync node for tests, run as root inside
#   unshare --mount --uts --fork --propagation private
# so that its state (/var/lib/pacemaker, /var/lib/corosync, /run, /dev/shm),
# its hostname and the agents it finds (/usr/sbin, /usr/lib/stonith: overlays
# holding the plugin under test) are its own. The network is the host's (one
# node: corosync on 127.0.0.1) or a namespace on a test bridge (ip netns exec,
# several nodes); either way the plugin reaches the broker over it.
#   pacemaker-node.sh DIR NODENAME PLUGIN [IDENTITY]
# DIR holds corosync.conf and receives pacemaker.log / corosync.log. IDENTITY,
# if given, is copied to /run/fence_broker/identity: the same path on every
# node, each node's own key, as production nodes keep theirs.
set -euo pipefail
dir=$1 node=$2 plugin=$3 identity=${4:-}
hostname "$node"
for d in /var/lib/pacemaker /var/lib/corosync /run /dev/shm /var/log/pacemaker; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /var/lib/pacemaker/{cib,pengine,blackbox,cores} /run/crm
chown -R hacluster:haclient /var/lib/pacemaker
if [ -n "$identity" ]; then
  mkdir -p -m 0700 /run/fence_broker
  install -m 0600 "$identity" /run/fence_broker/identity
fi
# The plugin under test, seen only by this node: overlays over the agent folders.
for pair in "/usr/sbin:fence_broker" "/usr/lib/stonith/plugins/external:fence-broker"; do
  target=${pair%%:*} name=${pair##*:}
  up=$dir/ovl$(echo "$target" | tr / _)
  mkdir -p "$up/upper" "$up/work"
  mount -t overlay overlay -o "lowerdir=$target,upperdir=$up/upper,workdir=$up/work" "$target"
  cp "$plugin" "$target/$name"
  chmod 0755 "$target/$name"
done
mount --bind "$dir/corosync.conf" /etc/corosync/corosync.conf
export PCMK_logfile=$dir/pacemaker.log
corosync -f >"$dir/corosync.log" 2>&1 &
cs=$!
# pacemakerd needs corosync's IPC up.
for _ in $(seq 1 300); do corosync-cfgtool -s >/dev/null 2>&1 && break; sleep 0.1; done
pacemakerd -f >>"$dir/pacemakerd.out" 2>&1 &
pm=$!
trap 'kill -TERM $pm 2>/dev/null; wait $pm 2>/dev/null; kill -TERM $cs 2>/dev/null; wait $cs 2>/dev/null; exit 0' TERM INT
echo "node $node up: corosync $cs pacemakerd $pm" >&2
wait
