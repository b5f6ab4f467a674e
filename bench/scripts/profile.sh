#!/usr/bin/env bash
# Profiles tuxa under one scenario: starts the release server on core 0, the generator on core 1,
# and records the server with `perf record -g` (PERF=1, default) or counts instructions with
# callgrind (CALLGRIND=1; slow: use a short DURATION and a small SUBSCRIBERS).
#
#   SCENARIO=s3 SUBSCRIBERS=199 DURATION=8 bash bench/scripts/profile.sh
#   SCENARIO=s2r DURATION=15 bash bench/scripts/profile.sh   # S2 with every track recorded
# Output: /tmp/tuxa-profile.<scenario>.{perf.data,txt} or callgrind.out.<pid>.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
SCENARIO=${SCENARIO:-s3}
SUBSCRIBERS=${SUBSCRIBERS:-99}
DURATION=${DURATION:-8}
ROOMS=${ROOMS:-20}
MAXP=${MAXP:-250}
OUT=/tmp/tuxa-profile.$SCENARIO
d=$(mktemp -d /tmp/tuxa-prof.XXXXXX)
# A recording key outside the data dir (S2R records; other scenarios leave it unused).
keys=$(mktemp /tmp/tuxa-prof-keys.XXXXXX)
"$TARGET/release/tuxa" recording-key --id 1 >"$keys"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p=$(port); u=$(port)
WRAP=()
[[ -n "${CALLGRIND:-}" ]] && WRAP=(valgrind --tool=callgrind --callgrind-out-file="$OUT.callgrind")
TUXA_ADMIN_KEY=bench-admin-key taskset -c 0 "${WRAP[@]}" "$TARGET/release/tuxa" --listen 127.0.0.1:$p \
  --media-listen 127.0.0.1:$u --announce 127.0.0.1 --data-dir "$d" --cert-dir "$d/certs" \
  --no-demo --max-participants "$MAXP" --recording-keys "$keys" --log warn >"$d/log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$d" "$keys"' EXIT
for _ in $(seq 300); do curl -skf "https://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
if [[ -z "${CALLGRIND:-}" ]]; then
  ( sleep "${PERF_DELAY:-6}"; perf record -g -F 2000 -p $SERVER -o "$OUT.perf.data" -- sleep "$DURATION" >/dev/null 2>&1 ) &
  PERF=$!
fi
TUXA_ADMIN_KEY=bench-admin-key taskset -c 1 "$TARGET/release/tuxa-bench" run --target tuxa \
  --addr 127.0.0.1:$p --pid $SERVER --scenario "$SCENARIO" --duration "$DURATION" \
  --subscribers "$SUBSCRIBERS" --rooms "$ROOMS" --data-dir "$d"
if [[ -z "${CALLGRIND:-}" ]]; then
  wait $PERF || true
  perf report -i "$OUT.perf.data" --no-children --percent-limit 0.7 --stdio 2>/dev/null \
    | grep -v '^$' | grep -E '^ +[0-9]' | head -60 > "$OUT.txt"
  echo "perf report (self, top): $OUT.txt"
fi
