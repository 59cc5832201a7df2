#!/bin/sh
# install.sh [--prefix DIR]: installs this fence-broker release (built by
# `npm run package`) on a host that has Node.js >= 20 and nothing else: no
# npm, Go, opa or compiler. Run it from the unpacked release folder, as root
# for a real install. It never uses the network.
#
# DIR (default /) is the root of the tree to install into; every path written
# into the unit, logrotate and the example config points inside it, so a
# --prefix install is complete and runnable where it is:
#   DIR/opt/fence-broker/                   the program (replaced as a whole on upgrade)
#   DIR/usr/local/bin/fence-broker, fencectl  symlinks to it
#   DIR/usr/local/share/man/man8, man5      fencectl(8), fence-broker(8), fence_broker(8), clusters.yaml(5)
#   DIR/lib/systemd/system/fence-broker.service
#   DIR/etc/logrotate.d/fence-broker
#   DIR/etc/fence-broker/clusters.yaml      the example, only if there is no config yet
#   DIR/opt/fence-broker/plugin/            the guest plugin, for guest admins to copy (external/fence-broker.sh:
#                                           the cluster-glue face in POSIX sh, for nodes without Node.js)
#   DIR/var/lib/fence-broker (0700)         host key: created (ed25519, 0600) when missing, like ssh-keygen -A
#   DIR/var/log/fence-broker (0750)         audit log
# The broker refuses files that group or others may write (strict files,
# broker/config/files.ts), so everything is installed 0644/0755 under umask
# 022; folders that already exist (/opt, /var/log, ...) keep their modes.
set -eu
umask 022

die() {
  echo "install.sh: $*" >&2
  exit 1
}
usage() {
  echo "usage: install.sh [--prefix DIR]   (DIR absolute, default /)"
}
# A folder that exists keeps its mode (/var/log, /opt are the system's); a new one gets MODE.
ensure_dir() {
  [ -d "$2" ] || install -d -m "$1" "$2"
}

prefix=/
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case $prefix in
  /*) ;;
  *) die "--prefix must be an absolute path (it is written into the systemd unit and the config), got: $prefix" ;;
esac
# The prefix goes into sed replacements and a systemd unit: keep to characters neither treats specially.
case $prefix in
  *[!A-Za-z0-9._/-]*) die "--prefix may contain only letters, digits and . _ / - (got: $prefix)" ;;
esac
# "/" → "", "/srv/x/" → "/srv/x": every installed path is "$root/..."
root=$(printf '%s' "$prefix" | sed 's|/*$||')

src=$(cd "$(dirname "$0")" && pwd -P)
[ -f "$src/RELEASE" ] && [ -f "$src/dist/broker/main.js" ] || die "$src is not a fence-broker release folder (no RELEASE or dist/broker/main.js); run install.sh from the unpacked tarball"

# --- Node.js >= 20 -----------------------------------------------------------
node=$(command -v node) || die "node not found on PATH; fence-broker needs Node.js >= 20 (Debian: apt-get install nodejs, if its version is >= 20)"
case $node in
  *[!A-Za-z0-9._/+-]*) die "the path of node ($node) has characters the systemd unit would need quoted; put a node on PATH under a plain path" ;;
  /*) ;;
  *) die "node on PATH is not an absolute path ($node); the systemd unit needs one" ;;
esac
version=$("$node" -p 'process.versions.node' 2>/dev/null) || die "$node does not run"
major=${version%%.*}
case $major in
  '' | *[!0-9]*) die "cannot tell the version of $node (it said: $version)" ;;
esac
[ "$major" -ge 20 ] || die "$node is Node.js $version; fence-broker needs Node.js >= 20"

# --- the program tree --------------------------------------------------------
dest=$root/opt/fence-broker
if [ -e "$dest" ] && [ ! -f "$dest/RELEASE" ]; then
  die "$dest exists and was not installed by install.sh (no RELEASE file); move it away first"
fi
ensure_dir 0755 "$root/opt"
# Built aside, then swapped in: a restart never sees half a tree, and files of an older release do not linger.
new=$root/opt/.fence-broker.new.$$
old=$root/opt/.fence-broker.old.$$
trap 'rm -rf "$new"' EXIT
items="package.json RELEASE README.md SECURITY.md BENCHMARKS.md docs THIRD-PARTY-LICENSES dist schema plugin contrib man"
for item in $items; do
  [ -e "$src/$item" ] || die "$src/$item is missing: an incomplete release folder"
done
(cd "$src" && find $items -type d) | while IFS= read -r d; do
  install -d -m 0755 "$new/$d"
done
(cd "$src" && find $items -type f) | while IFS= read -r f; do
  if [ -x "$src/$f" ]; then mode=0755; else mode=0644; fi
  install -m "$mode" "$src/$f" "$new/$f"
done
# The tree's own prefix: its defaults (fencectl's --config) live under it (common/prefix.ts).
printf '%s\n' "${root:-/}" >"$new/INSTALL_PREFIX"
chmod 0644 "$new/INSTALL_PREFIX"
chmod 0755 "$new"
if [ -e "$dest" ]; then mv "$dest" "$old"; fi
mv "$new" "$dest" || die "could not move $new to $dest; the previous install is in $old"
rm -rf "$old"
echo "install.sh: program in $dest ($(sed -n 1p "$dest/RELEASE"))"

# --- commands ---------------------------------------------------------------
ensure_dir 0755 "$root/usr/local/bin"
for pair in fence-broker:main.js fencectl:fencectl.js; do
  cmd=${pair%%:*}
  link=$root/usr/local/bin/$cmd
  if [ -e "$link" ] && [ ! -L "$link" ]; then die "$link exists and is not a symlink; not replacing it"; fi
  # Relative, so the link is right inside the prefix and after a move of the whole root.
  ln -sfn "../../../opt/fence-broker/dist/broker/${pair#*:}" "$link"
done
echo "install.sh: commands $root/usr/local/bin/fence-broker, $root/usr/local/bin/fencectl"

# --- man pages ----------------------------------------------------------------
# Beside the commands, where man looks for /usr/local/bin's pages.
for page in "$dest"/man/man[0-9]/*; do
  section=${page%/*}
  section=${section##*/}
  ensure_dir 0755 "$root/usr/local/share/man/$section"
  install -m 0644 "$page" "$root/usr/local/share/man/$section/"
done
echo "install.sh: man pages in $root/usr/local/share/man (man fencectl, fence-broker, fence_broker, clusters.yaml)"

# --- systemd unit, logrotate --------------------------------------------------
# Paths in them are rewritten to the prefix; node is the one checked above.
relocate() {
  sed -e "s|/opt/fence-broker|$root/opt/fence-broker|g" \
      -e "s|/etc/fence-broker|$root/etc/fence-broker|g" \
      -e "s|/var/lib/fence-broker|$root/var/lib/fence-broker|g" \
      -e "s|/var/log/fence-broker|$root/var/log/fence-broker|g" \
      -e "s|/run/fence-broker|$root/run/fence-broker|g" "$@"
}
unit=$root/lib/systemd/system/fence-broker.service
ensure_dir 0755 "$root/lib/systemd/system"
relocate -e "s|^ExecStart=/usr/bin/node |ExecStart=$node |" "$src/contrib/fence-broker.service" >"$unit.tmp"
grep -q "^ExecStart=$node $dest/dist/broker/main.js " "$unit.tmp" || { rm -f "$unit.tmp"; die "$src/contrib/fence-broker.service: no ExecStart=/usr/bin/node /opt/fence-broker/dist/broker/main.js line to point at this install"; }
chmod 0644 "$unit.tmp"
mv "$unit.tmp" "$unit"
echo "install.sh: systemd unit $unit"

ensure_dir 0755 "$root/etc/logrotate.d"
relocate "$src/contrib/fence-broker.logrotate" >"$root/etc/logrotate.d/fence-broker.tmp"
chmod 0644 "$root/etc/logrotate.d/fence-broker.tmp"
mv "$root/etc/logrotate.d/fence-broker.tmp" "$root/etc/logrotate.d/fence-broker"
echo "install.sh: logrotate $root/etc/logrotate.d/fence-broker"

# --- state and log directories ----------------------------------------------
ensure_dir 0700 "$root/var/lib/fence-broker"
ensure_dir 0750 "$root/var/log/fence-broker"

# --- the config: never overwritten ------------------------------------------
config=$root/etc/fence-broker/clusters.yaml
ensure_dir 0755 "$root/etc/fence-broker"
if [ -e "$config" ]; then
  echo "install.sh: kept the existing $config (the example is $dest/contrib/clusters.example.yaml)"
else
  relocate "$src/contrib/clusters.example.yaml" >"$config.tmp"
  chmod 0640 "$config.tmp"
  mv "$config.tmp" "$config"
  echo "install.sh: example config $config (placeholder keys: replace them with fencectl keygen)"
fi

# --- does it load? -------------------------------------------------------------
# The installed fencectl on the config as it now is: schema, files' modes, the policy bundle.
if ! "$node" "$dest/dist/broker/fencectl.js" check --config "$config"; then
  die "installed, but fencectl check fails on $config (above); fix it before starting the service"
fi

# --- the host key: like ssh-keygen -A, only when missing ------------------------
# At the config's broker.host_key, so keygen, pacemaker and heartbeat print the
# pin before the broker ever started.
said=$("$node" "$dest/dist/broker/host-key.js" --config "$config") || die "could not create the host key of $config (above)"
echo "install.sh: $said"

if [ -z "$root" ]; then
  echo "install.sh: done. Next: edit $config, then: systemctl daemon-reload && systemctl enable --now fence-broker"
else
  # A staging tree: systemd does not look into it, and its paths are the prefix's.
  echo "install.sh: done, into the prefix $prefix (systemd does not see $unit there). Next: edit $config, then run it in the foreground: $root/usr/local/bin/fence-broker --config $config (with broker.pid_file set, fencectl reload finds it)"
fi
