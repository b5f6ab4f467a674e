#!/usr/bin/env bash
# Browser end-to-end tests of tuxa: real Chromium and Firefox ESR, headless,
# with fake cameras and microphones, against a real tuxa server.
#
#   tests/browser/run.sh                       # all tests
#   tests/browser/run.sh tests/1-visit-chromium.test.mjs   # some (paths relative to tests/browser)
#
# Environment:
#   TUXA_BIN       server binary (default: target/release/tuxa under the repo root;
#                  built with `cargo build --release -p tuxa-server` if that is missing)
#   TUXA_NETNS=0   do not isolate in a private network namespace
#   TUXA_KEEP=1    keep the temp dir (server log, data dir) afterwards
#
# What it does: installs the Debian packages chromium and firefox-esr if they
# are missing, `npm ci` if node_modules is missing, then (inside `unshare --net`
# with only loopback up, when possible) starts the server on free ports with a
# temp data dir, runs the tests with `node --test`, and stops the server.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

log() { echo "[browser-tests] $*" >&2; }

if [[ -z "${TUXA_IN_NETNS:-}" ]]; then
  # ---- Outside the namespace: everything that needs the network. ----
  missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  [[ -x /usr/bin/firefox-esr ]] || missing+=(firefox-esr)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  if [[ ! -d "$HERE/node_modules/puppeteer-core" ]]; then
    log "npm ci"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  fi

  default_bin="$ROOT/target/release/tuxa"
  TUXA_BIN="${TUXA_BIN:-$default_bin}"
  [[ "$TUXA_BIN" = /* ]] || TUXA_BIN="$ROOT/$TUXA_BIN"
  if [[ ! -x "$TUXA_BIN" ]]; then
    if [[ "$TUXA_BIN" == "$default_bin" ]]; then
      log "no server binary at $TUXA_BIN: cargo build --release -p tuxa-server"
      (cd "$ROOT" && cargo build --release -p tuxa-server)
    else
      log "TUXA_BIN=$TUXA_BIN does not exist"
      exit 1
    fi
  fi
  export TUXA_BIN
  # The server embeds web-client/ at build time: a binary older than the
  # client's files serves the old client.
  stale="$(find "$ROOT/web-client" -maxdepth 1 -type f -newer "$TUXA_BIN" -printf '%f ' 2>/dev/null || true)"
  if [[ -n "$stale" ]]; then
    log "WARNING: $TUXA_BIN is older than web-client/ ($stale): it serves the old client; rebuild with cargo build --release -p tuxa-server"
  fi

  # Keep every packet on a private loopback: re-run this script in a new
  # network namespace when the kernel lets us make one.
  if [[ "${TUXA_NETNS:-1}" == 1 ]] && command -v unshare >/dev/null && command -v ip >/dev/null \
    && unshare --net true 2>/dev/null; then
    export TUXA_IN_NETNS=1
    exec unshare --net -- bash "$HERE/run.sh" "$@"
  fi
  log "no private network namespace: using the host's loopback"
  export TUXA_IN_NETNS=0
fi

if [[ "$TUXA_IN_NETNS" == 1 ]]; then
  ip link set lo up
fi

cd "$HERE"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tuxa-browser.XXXXXX")"
export TMPDIR="$TMP" # browser profiles go here too, and go away with it
SERVER_PID=""
status=1

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "$status" != 0 && -f "$TMP/server.log" ]]; then
    log "---- last 120 lines of the server log ($TMP/server.log) ----"
    tail -n 120 "$TMP/server.log" >&2 || true
  fi
  if [[ "${TUXA_KEEP:-0}" == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_tcp_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
free_udp_port() {
  node -e 'const s=require("dgram").createSocket("udp4");s.bind(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

PORT="$(free_tcp_port)"
UDP_PORT="$(free_udp_port)"
TCP_MEDIA_PORT="$(free_tcp_port)"
ADMIN_KEY="$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')"
mkdir -p "$TMP/data"
# The master key that seals the token key and TOTP secrets (docs/security.md)
# lives outside the data dir; every server the tests start (16 and 18 start
# their own) takes this one, never a keys/ folder in the work tree.
export TUXA_KEY_FILE="$TMP/keys/tuxa.key"
# Recordings (issue 13) need their own key, also outside the data dir and
# mode 0600 (docs/recording.md); without it the hub refuses to record.
mkdir -p "$TMP/keys"
(umask 077 && "$TUXA_BIN" recording-key >"$TMP/keys/recording.keys")
export TUXA_RECORDING_KEY_FILE="$TMP/keys/recording.keys"

log "starting $TUXA_BIN on https://127.0.0.1:$PORT, media udp 127.0.0.1:$UDP_PORT, tcp 127.0.0.1:$TCP_MEDIA_PORT (netns: $TUXA_IN_NETNS)"
# The cert dir and log filter go by environment (docs: every flag has a
# TUXA_* twin), so the command line stays the documented one.
TUXA_ADMIN_KEY="$ADMIN_KEY" TUXA_CERT_DIR="$TMP/certs" TUXA_DEMO=0 \
  TUXA_LOG="${TUXA_LOG:-info}" RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
  "$TUXA_BIN" --listen "127.0.0.1:$PORT" --media-listen "127.0.0.1:$UDP_PORT" \
  --media-tcp-listen "127.0.0.1:$TCP_MEDIA_PORT" --announce 127.0.0.1 --data-dir "$TMP/data" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

export TUXA_URL="https://127.0.0.1:$PORT"
export TUXA_ADMIN_KEY="$ADMIN_KEY"

healthy() {
  node -e '
    const req = require("https").get(process.argv[1], { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      process.exit(res.statusCode === 200 ? 0 : 1);
    });
    req.on("error", () => process.exit(1));
    req.on("timeout", () => { req.destroy(); process.exit(1); });
  ' "$TUXA_URL/healthz"
}

for i in $(seq 120); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server exited during start-up"
    exit 1
  fi
  if healthy; then break; fi
  if [[ "$i" == 120 ]]; then
    log "the server did not answer /healthz within 60 s"
    exit 1
  fi
  sleep 0.5
done
log "server ready"

# A link that expires in 60 s, for the bad-link test at the end.
export TUXA_PREPARED="$TMP/prepared.json"
node lib/prepare.mjs >"$TUXA_PREPARED"

if (($#)); then
  files=("$@")
else
  files=(tests/*.test.mjs)
fi

set +e
timeout --signal=TERM --kill-after=20 900 \
  node --test --test-concurrency=1 "${files[@]}"
status=$?
set -e
exit "$status"
