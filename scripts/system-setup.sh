#!/usr/bin/env bash
# system-setup.sh [--dry-run]: installs and starts the real components the
# tests and benches drive (docs/design.md §8): libvirt + QEMU (started by hand: these
# machines have no systemd or dbus), cluster-glue, pacemaker + corosync and
# heartbeat (run in namespaces by test/cluster/), fence-agents, fence-virt,
# OpenSSH, xmllint, pcs and crmsh, systemd (for systemd-analyze verify of the
# unit, and systemd-notify; nothing starts it).
# Run by `npm test` and the benches only, never by `npm start` or `npm run
# package`: it reconfigures the machine (QEMU without confinement), which no
# production hypervisor should get. It first says on stderr what it will change,
# then changes only what is missing; --dry-run says it and stops. Needs root.
set -euo pipefail
dry_run=0
case ${1:-} in
  --dry-run) dry_run=1 ;;
  '') ;;
  *) echo "usage: system-setup.sh [--dry-run]" >&2; exit 2 ;;
esac

PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
      prometheus  # promtool: check metrics (the /metrics output) and check/test rules (contrib/); the server is never started
      cluster-glue heartbeat pacemaker pacemaker-cli-utils corosync fence-agents fence-virt fence-virtd iproute2 etcd-server etcd-client
      libxml2-utils openssh-client openssh-server systemd
      logrotate  # the installed contrib/fence-broker.logrotate, run against a broker
      shellcheck busybox  # the sh face: shellcheck -s sh, and busybox ash to run it under
      python3  # tests: the notify socket (AF_UNIX datagrams, sender credentials) and an O_NONBLOCK stdin pipe; Node has neither
      pcs crmsh  # fencectl pacemaker --format pcs|crm, applied to offline CIB files; pcsd is never started
      mandoc man-db)  # the generated man pages: mandoc -T lint, man -l
# Without their recommends: devscripts (for checkbashisms only) recommends a packaging toolchain.
BARE=(devscripts)
# libvirt as root without systemd: QEMU runs as root, without a security driver or cgroups.
conf=/etc/libvirt/qemu.conf
marker='# fence-broker test host settings'
QEMU_CONF=('user = "root"' 'group = "root"' 'security_driver = "none"' 'cgroup_controllers = [ ]')

# --- what is missing -----------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
bare=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${BARE[@]}"; do installed "$p" || bare+=("$p"); done
# A setting counts as there when an uncommented line says exactly it (spaces aside).
conf_lines=()
for line in "${QEMU_CONF[@]}"; do
  want=${line// /}
  [ -f "$conf" ] && sed 's/[[:space:]]//g' "$conf" | grep -qxF "$want" || conf_lines+=("$line")
done
groups=()
for g in kvm libvirt libvirt-qemu; do getent group "$g" >/dev/null || groups+=("$g"); done
user_missing=0
id libvirt-qemu >/dev/null 2>&1 || user_missing=1
libvirt_up() { virsh -c qemu:///system version >/dev/null 2>&1; }
virtlogd_up() { [ -S /run/libvirt/virtlogd-sock ] && pgrep -x virtlogd >/dev/null; }
start_virtlogd=0
virtlogd_up || start_virtlogd=1
start_libvirtd=0
libvirt_up || start_libvirtd=1

# --- say it first ----------------------------------------------------------------
plan=()
[ $((${#missing[@]} + ${#bare[@]})) -eq 0 ] || plan+=("apt-get update, then install Debian packages: ${missing[*]} ${bare[*]}")
[ ${#groups[@]} -eq 0 ] || plan+=("add groups the packages expect, unless they add them: ${groups[*]}")
[ $user_missing -eq 0 ] || plan+=("add the system user libvirt-qemu, unless the packages add it")
for line in "${conf_lines[@]}"; do plan+=("append to $conf: $line"); done
[ $start_virtlogd -eq 0 ] || plan+=("start virtlogd (a stale one without its socket is killed first)")
[ $start_libvirtd -eq 0 ] || plan+=("start libvirtd (a stale one without its socket is killed first)")
if [ ${#plan[@]} -eq 0 ]; then
  echo "system-setup: nothing to change on this machine: the test packages, $conf and libvirtd are already set up" >&2
  exit 0
fi
{
  echo "system-setup: the real-component tests need these changes to this machine (not for a production hypervisor: QEMU runs as root, unconfined):"
  printf '  - %s\n' "${plan[@]}"
} >&2
if [ $dry_run = 1 ]; then echo "system-setup: --dry-run: nothing changed" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "system-setup: not root; changing nothing (tests needing these parts will say so)" >&2; exit 0; fi

# --- change what is missing --------------------------------------------------------
if [ $((${#missing[@]} + ${#bare[@]})) -gt 0 ]; then
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

getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt >/dev/null || groupadd -r libvirt
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
if [ ${#conf_lines[@]} -gt 0 ]; then
  mkdir -p "$(dirname "$conf")"
  if ! grep -qF "$marker" "$conf" 2>/dev/null; then echo "$marker" >>"$conf"; fi
  printf '%s\n' "${conf_lines[@]}" >>"$conf"
fi
mkdir -p /var/log/libvirt /run/libvirt
# QEMU domains cannot start without virtlogd's socket, whatever libvirtd says.
if ! virtlogd_up; then
  pkill -x virtlogd 2>/dev/null && sleep 0.5
  rm -f /run/libvirt/virtlogd-sock /run/virtlogd.pid
  virtlogd -d
fi
if ! libvirt_up; then
  # A libvirtd that is still exiting, or a stale one without its socket, goes first.
  pkill -x libvirtd 2>/dev/null && sleep 1
  libvirtd -d
fi
for _ in $(seq 1 50); do
  libvirt_up && break
  sleep 0.2
done
libvirt_up || { echo "system-setup: libvirtd did not come up (see /var/log/libvirt)" >&2; exit 1; }
echo "system-setup: libvirt + QEMU ready (qemu:///system)" >&2
