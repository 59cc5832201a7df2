#!/usr/bin/env bash
# Installs and starts the real components the tests drive (DESIGN.md §8):
# libvirt + QEMU (started by hand: these machines have no systemd or dbus),
# cluster-glue, pacemaker + corosync and heartbeat (run in namespaces by test/cluster/), fence-agents,
# fence-virt, OpenSSH, xmllint, pcs and crmsh, systemd (for systemd-analyze verify of the unit, and systemd-notify; nothing starts it).
# Idempotent; needs root. Prints what it did to stderr.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "system-setup: not root; skipping (tests needing these parts will say so)" >&2; exit 0; fi

PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
      prometheus  # promtool: check metrics (the /metrics output) and check/test rules (contrib/); the server is never started
      cluster-glue heartbeat pacemaker pacemaker-cli-utils corosync fence-agents fence-virt fence-virtd iproute2 etcd-server etcd-client
      libxml2-utils openssh-client openssh-server systemd
      shellcheck busybox  # the sh face: shellcheck -s sh, and busybox ash to run it under
      python3  # tests: the notify socket (AF_UNIX datagrams, sender credentials) and an O_NONBLOCK stdin pipe; Node has neither
      pcs crmsh)  # fencectl pacemaker --format pcs|crm, applied to offline CIB files; pcsd is never started
# Without their recommends: devscripts (for checkbashisms only) recommends a packaging toolchain.
BARE=(devscripts)
missing=()
bare=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
for p in "${BARE[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || bare+=("$p")
done
if [ $((${#missing[@]} + ${#bare[@]})) -gt 0 ]; then
  echo "system-setup: apt-get install ${missing[*]} ${bare[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their daemons (pcsd, corosync, pacemaker...): the
  # tests run their own, and pcs's install fails if pcsd cannot start. Container
  # images already deny it with policy-rc.d; elsewhere, deny it for this install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
  [ ${#bare[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${bare[@]}" >&2
fi

# libvirt as root without systemd: users/groups the packages expect, a qemu.conf
# without a security driver or cgroups, then the daemons by hand.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt >/dev/null || groupadd -r libvirt
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
conf=/etc/libvirt/qemu.conf
marker='# fence-broker test host settings'
if ! grep -qF "$marker" "$conf"; then
  cat >>"$conf" <<CONF
$marker
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
CONF
fi
mkdir -p /var/log/libvirt /run/libvirt
up() { virsh -c qemu:///system version >/dev/null 2>&1; }
# QEMU domains cannot start without virtlogd's socket, whatever libvirtd says.
if [ ! -S /run/libvirt/virtlogd-sock ] || ! pgrep -x virtlogd >/dev/null; then
  pkill -x virtlogd 2>/dev/null && sleep 0.5
  rm -f /run/libvirt/virtlogd-sock /run/virtlogd.pid
  virtlogd -d
fi
if ! up; then
  # A libvirtd that is still exiting, or a stale one without its socket, goes first.
  pkill -x libvirtd 2>/dev/null && sleep 1
  libvirtd -d
fi
for _ in $(seq 1 50); do
  up && break
  sleep 0.2
done
up || { echo "system-setup: libvirtd did not come up (see /var/log/libvirt)" >&2; exit 1; }
echo "system-setup: libvirt + QEMU ready (qemu:///system)" >&2
