#!/usr/bin/env bash
# Installs, upgrades and purges the amd64 package in a minimal Debian 12 chroot (debootstrap, kept
# in $INTEROP_HOME between runs) and checks each step; checks the ARM packages' metadata and
# binaries without installing them.
#
#   packaging/deb/test.sh target/debian/shopfloor-agent_*.deb
#
# Needs root (chroot) and debootstrap (installed with apt when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[deb-test $(date +%H:%M:%S)] $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE.deb..." >&2; exit 2; }

HOME_DIR=${INTEROP_HOME:-/tmp/shopfloor-interop}
BASE=$HOME_DIR/debian-bookworm-minbase.tar
mkdir -p "$HOME_DIR"
if [ ! -f "$BASE" ]; then
  command -v debootstrap >/dev/null || {
    log "apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
  }
  log "debootstrap bookworm (minbase)"
  tmp=$(mktemp -d)
  debootstrap --variant=minbase --include=systemd-standalone-sysusers,systemd-standalone-tmpfiles bookworm "$tmp/root" http://deb.debian.org/debian >"$tmp/log" 2>&1 ||
    { tail -20 "$tmp/log" >&2; fail "debootstrap"; }
  tar -C "$tmp/root" -cf "$BASE" .
  rm -rf "$tmp"
fi

amd64=""
for deb in "$@"; do
  arch=$(dpkg-deb -f "$deb" Architecture)
  log "$deb: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $arch"
  files=$(dpkg-deb -c "$deb" | awk '{print $6}')
  for f in ./usr/bin/shopfloor-agent ./etc/shopfloor-agent/agent.toml \
    ./usr/lib/systemd/system/shopfloor-agent.service ./usr/lib/sysusers.d/shopfloor-agent.conf \
    ./usr/lib/tmpfiles.d/shopfloor-agent.conf ./usr/share/shopfloor-agent/quality-record.v1.schema.json; do
    grep -qx "$f" <<<"$files" || fail "$deb lacks $f"
  done
  ctl=$(mktemp -d); dpkg-deb -e "$deb" "$ctl"
  grep -qx /etc/shopfloor-agent/agent.toml "$ctl/conffiles" || fail "agent.toml is not a conffile"
  x=$(mktemp -d); dpkg-deb -x "$deb" "$x"
  case $arch in
    amd64) want="x86-64"; amd64=$deb ;;
    arm64) want="ARM aarch64" ;;
    armhf) want="ARM, EABI5" ;;
    *) fail "unexpected architecture $arch" ;;
  esac
  if command -v file >/dev/null; then
    file -b "$x/usr/bin/shopfloor-agent" | grep -q "$want" || fail "the binary is not $want: $(file -b "$x/usr/bin/shopfloor-agent")"
  fi
  # Static: the package depends on no libc, so the binary must not ask for a program interpreter.
  interp=$(readelf -l "$x/usr/bin/shopfloor-agent" | grep -i "program interpreter" || true)
  [ -z "$interp" ] || fail "the binary is not static: $interp"
  depends=$(dpkg-deb -f "$deb" Depends)
  case $depends in *libc*) fail "a static binary's package depends on libc: $depends" ;; esac
  rm -rf "$x" "$ctl"
done
[ -n "$amd64" ] || { log "no amd64 package: nothing to install here"; exit 0; }

root=$(mktemp -d)
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$BASE"
# systemd-tmpfiles and the agent read /proc.
mount -t proc proc "$root/proc"
in_root() { chroot "$root" "$@"; }
cp "$amd64" "$root/tmp/pkg.deb"

log "install"
in_root dpkg -i /tmp/pkg.deb >"$root/tmp/install.log" 2>&1 || { cat "$root/tmp/install.log" >&2; fail "dpkg -i"; }
grep -q "edit /etc/shopfloor-agent/agent.toml" "$root/tmp/install.log" || fail "no first-install hint"
in_root getent passwd shopfloor-agent | grep -q ":/var/lib/shopfloor-agent:/usr/sbin/nologin$" || fail "service user"
[ "$(stat -c %a "$root/etc/shopfloor-agent/credentials")" = 700 ] || fail "credentials dir mode"
[ -d "$root/etc/shopfloor-agent/agent.d" ] || fail "agent.d"
[ -L "$root/etc/systemd/system/multi-user.target.wants/shopfloor-agent.service" ] || fail "unit not enabled"
in_root shopfloor-agent --version | grep -q "^shopfloor-agent " || fail "--version"
in_root shopfloor-agent --config /etc/shopfloor-agent/agent.toml validate --no-environment >/dev/null || fail "validate the shipped config"

log "a run inside the root, as the service user"
mkdir -p "$root/var/lib/shopfloor-agent"
in_root chown shopfloor-agent:shopfloor-agent /var/lib/shopfloor-agent
cat >"$root/etc/shopfloor-agent/agent.d/10-test.toml" <<'TOML'
[metrics]
enabled = false
TOML
cat >"$root/tmp/agent.toml" <<'TOML'
[agent]
gateway_id = "deb-test"
data_dir = "/var/lib/shopfloor-agent"
[metrics]
enabled = false
[sinks.audit]
type = "file"
path = "/var/lib/shopfloor-agent/out/records.jsonl"
TOML
in_root setpriv --reuid=shopfloor-agent --regid=shopfloor-agent --init-groups \
  timeout -s TERM 3 shopfloor-agent --config /tmp/agent.toml run 2>"$root/tmp/run.log" || true
in_root setpriv --reuid=shopfloor-agent --regid=shopfloor-agent --init-groups \
  shopfloor-agent --config /tmp/agent.toml verify || { cat "$root/tmp/run.log" >&2; fail "verify"; }
[ "$(in_root stat -c %U /var/lib/shopfloor-agent/journal.sqlite)" = shopfloor-agent ] || fail "journal owner"

log "upgrade keeps an edited conffile"
echo "# edited on site" >>"$root/etc/shopfloor-agent/agent.toml"
in_root dpkg -i --force-confold /tmp/pkg.deb >"$root/tmp/upgrade.log" 2>&1 || { cat "$root/tmp/upgrade.log" >&2; fail "upgrade"; }
grep -q "# edited on site" "$root/etc/shopfloor-agent/agent.toml" || fail "the edited conffile was replaced"

log "remove, then purge"
in_root dpkg -r shopfloor-agent >/dev/null 2>&1 || fail "dpkg -r"
[ ! -e "$root/usr/bin/shopfloor-agent" ] || fail "binary left after remove"
[ -f "$root/etc/shopfloor-agent/agent.toml" ] || fail "remove must keep the configuration"
in_root dpkg -P shopfloor-agent >"$root/tmp/purge.log" 2>&1 || { cat "$root/tmp/purge.log" >&2; fail "dpkg -P"; }
[ ! -e "$root/etc/shopfloor-agent" ] || fail "/etc/shopfloor-agent left after purge: $(ls -R "$root/etc/shopfloor-agent")"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/shopfloor-agent.service" ] || fail "unit still enabled"
[ -f "$root/var/lib/shopfloor-agent/journal.sqlite" ] || fail "purge must keep the journal (evidence)"
grep -q "journal in /var/lib/shopfloor-agent is kept" "$root/tmp/purge.log" || fail "no note about the kept journal"
in_root dpkg -s shopfloor-agent >/dev/null 2>&1 && fail "still known to dpkg"
log "OK: install, run as the service user, upgrade with an edited conffile, remove, purge"
