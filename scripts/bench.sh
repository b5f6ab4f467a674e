#!/usr/bin/env bash
# Benchmarks tuxa against Janus (Debian's package) and the forwarding floor, interleaved, three
# runs each, and writes BENCHMARKS.md. The server under test is pinned to core 0, the load
# generator to core 1. Everything runs in a private network namespace (`unshare --net`).
#
#   bash scripts/bench.sh                 # all scenarios, all systems, 3 runs
#   RUNS=1 SCENARIOS="s1 s3" SYSTEMS="tuxa floor" bash scripts/bench.sh
#   RUNS=3 DURATION=20 SCENARIOS="s2 s2r" SYSTEMS=tuxa OUT=/tmp/rec.md bash scripts/bench.sh
#                                         # S2R: S2 with every track recorded (tuxa only)
#
# Environment: RUNS (3), SCENARIOS ("s1 s2 s3 s4 s6"), SYSTEMS ("floor tuxa janus"), DURATION
# (10 s window), SUBSCRIBERS (199: S3 is one publisher and 199 subscribers in one room), CYCLES
# (1000), S4_CAP (0.25: S4's server runs in a cgroup capped at this many cores), S4_ROOMS (300:
# S4 stops there at the latest), OUT (BENCHMARKS.md), CARGO_TARGET_DIR (target), NICE (0).
# Needs root (unshare --net, ip link, the cgroup v1 cpu controller at /sys/fs/cgroup/cpu for
# S4), taskset, curl, python3; Janus from `apt-get install janus`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-"s1 s2 s3 s4 s6"}
SYSTEMS=${SYSTEMS:-"floor tuxa janus"}
DURATION=${DURATION:-10}
SUBSCRIBERS=${SUBSCRIBERS:-199}
CYCLES=${CYCLES:-1000}
S4_CAP=${S4_CAP:-0.25}
S4_ROOMS=${S4_ROOMS:-300}
OUT=${OUT:-$ROOT/BENCHMARKS.md}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
# NICE=-5 gives the server and the generator priority over other work on a shared machine.
NICE=${NICE:-0}
COMMAND="$0 $*"
ENVLINE="NICE=$NICE RUNS=$RUNS SCENARIOS=\"$SCENARIOS\" SYSTEMS=\"$SYSTEMS\" DURATION=$DURATION SUBSCRIBERS=$SUBSCRIBERS CYCLES=$CYCLES S4_CAP=$S4_CAP S4_ROOMS=$S4_ROOMS"

if [[ -z "${BENCH_NETNS:-}" ]]; then
  # The revision measured: taken before the build (and before the report overwrites
  # BENCHMARKS.md, which is tracked and so not counted as a change).
  if BENCH_REV_AT_START=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD -- . ':!BENCHMARKS.md' 2>/dev/null ||
      BENCH_REV_AT_START="$BENCH_REV_AT_START (with uncommitted changes)"
  else
    BENCH_REV_AT_START=${BENCH_REV:-unknown}
  fi
  export BENCH_REV_AT_START
  cargo build --release -p tuxa-server -p tuxa-bench
  # Everything runs in a private network namespace: nothing is reachable from outside. Janus
  # ignores loopback interfaces when it gathers ICE candidates, so the namespace gets a veth
  # pair (10.77.0.1 <-> 10.77.0.2) for Janus and its clients; tuxa and the floor use 127.0.0.1.
  exec unshare --net env BENCH_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
ip link add bench0 type veth peer name bench1
ip addr add 10.77.0.1/24 dev bench0
ip addr add 10.77.0.2/24 dev bench1
ip link set bench0 up
ip link set bench1 up
TUXA=$TARGET/release/tuxa
BENCH=$TARGET/release/tuxa-bench

if [[ " $SYSTEMS " == *" janus "* ]] && ! command -v janus >/dev/null; then
  echo "janus missing: apt-get install -y janus (or SYSTEMS=\"floor tuxa\")" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/tuxa-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
# tuxa always runs with a recording key (outside its data dir, as in production), so S2 and
# S2R differ only in the room's recording being on.
"$TUXA" recording-key --id 1 >"$WORK/recording.keys"
chmod 600 "$WORK/recording.keys"
SERVER_PID=
SERVER_LOG=
SERVER_DIR=
# S4's CPU cap: a cgroup (v1 cpu controller) with a 10 ms period and S4_CAP cores of quota.
CGROUP=/sys/fs/cgroup/cpu/tuxa-bench-$$
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -d $CGROUP ]]; then rmdir "$CGROUP" 2>/dev/null || true; fi
}
cap_server() { # cap_server PID: moves the server into the capped cgroup
  mkdir -p "$CGROUP"
  echo 10000 >"$CGROUP/cpu.cfs_period_us"
  local quota
  quota=$(python3 -c "print(int($S4_CAP * 10000))")
  echo "$quota" >"$CGROUP/cpu.cfs_quota_us"
  echo "$1" >"$CGROUP/cgroup.procs"
}
trap cleanup EXIT

port() { # a free TCP/UDP port on loopback
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for CMD...: until it succeeds (15 s)
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

janus_config() { # janus_config DIR WSPORT: a config that loads VideoRoom and WebSockets only
  local d=$1 p=$2 lib=/usr/lib/x86_64-linux-gnu/janus
  mkdir -p "$d/plugins" "$d/transports" "$d/events" "$d/loggers"
  ln -sf $lib/plugins/libjanus_videoroom.so "$d/plugins/"
  ln -sf $lib/transports/libjanus_websockets.so "$d/transports/"
  cat > "$d/janus.jcfg" <<JCFG
general: {
  configs_folder = "$d"
  plugins_folder = "$d/plugins"
  transports_folder = "$d/transports"
  events_folder = "$d/events"
  loggers_folder = "$d/loggers"
  debug_level = 3
  session_timeout = 60
}
certificates: {}
media: { ipv6 = false  rtp_port_range = "30000-60000" }
nat: { ice_enforce_list = "bench0"  ignore_mdns = true  nice_debug = false }
plugins: {}
transports: {}
loggers: {}
events: {}
JCFG
  cat > "$d/janus.transport.websockets.jcfg" <<JCFG
general: { json = "plain"  ws = true  ws_port = $p  ws_ip = "127.0.0.1"  wss = false }
admin: { admin_ws = false  admin_wss = false }
JCFG
  echo 'general: {}' > "$d/janus.plugin.videoroom.jcfg"
}

start_server() { # start_server SYSTEM: sets SERVER_PID and ADDR
  local sys=$1 d=$WORK/$sys-$RANDOM
  mkdir -p "$d"
  case $sys in
    tuxa)
      local p u
      p=$(port); u=$(port)
      # tuxa::sfu_counts: the SFU's table sizes, which S6 compares before and after.
      TUXA_ADMIN_KEY=bench-admin-key nice -n "$NICE" taskset -c "$SERVER_CPU" "$TUXA" --listen 127.0.0.1:$p \
        --media-listen 127.0.0.1:$u --announce 127.0.0.1 --data-dir "$d" --cert-dir "$d/certs" \
        --no-demo --max-participants 250 --recording-keys "$WORK/recording.keys" \
        --log warn,tuxa::sfu_counts=debug >"$d/log" 2>&1 &
      SERVER_PID=$!
      SERVER_LOG=$d/log
      SERVER_DIR=$d
      ADDR=127.0.0.1:$p
      wait_for curl -skf "https://$ADDR/healthz"
      ;;
    janus)
      local p
      p=$(port)
      janus_config "$d" "$p"
      nice -n "$NICE" taskset -c "$SERVER_CPU" janus -C "$d/janus.jcfg" -F "$d" >"$d/log" 2>&1 &
      SERVER_PID=$!
      ADDR=ws://127.0.0.1:$p
      wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$p"
      ;;
    floor)
      local u
      u=$(port)
      nice -n "$NICE" taskset -c "$SERVER_CPU" "$BENCH" floor-server --listen 127.0.0.1:$u >"$d/log" 2>&1 &
      SERVER_PID=$!
      ADDR=127.0.0.1:$u
      sleep 0.2
      ;;
  esac
}

for run in $(seq "$RUNS"); do
  for sc in $SCENARIOS; do
    for sys in $SYSTEMS; do
      # S2R records: only tuxa does.
      [[ $sc == s2r && $sys != tuxa ]] && continue
      echo "== run $run: $sys $sc" >&2
      start_server "$sys"
      extra=()
      if [[ $sc == s4 ]]; then
        cap_server "$SERVER_PID"
        extra=(--cpu-cap "$S4_CAP" --rooms "$S4_ROOMS")
      fi
      [[ $sys == tuxa ]] && extra+=(--server-log "$SERVER_LOG" --data-dir "$SERVER_DIR")
      client_ip=127.0.0.1
      [[ $sys == janus ]] && client_ip=10.77.0.1
      BENCH_CLIENT_IP=$client_ip TUXA_ADMIN_KEY=bench-admin-key nice -n "$NICE" taskset -c "$GEN_CPU" "$BENCH" run --target "$sys" \
        --addr "$ADDR" --pid "$SERVER_PID" --scenario "$sc" --run "$run" --duration "$DURATION" \
        --subscribers "$SUBSCRIBERS" --cycles "$CYCLES" "${extra[@]}" --out "$RESULTS" >&2 || true
      cleanup
      SERVER_PID=
    done
  done
done

{
  echo "# Benchmarks"
  echo
  echo "Generated by \`scripts/bench.sh\` — do not edit by hand; rerun it (see *Method* below)."
  echo
  echo "- **Command**: \`$ENVLINE bash scripts/bench.sh\`"
  echo "- **Git revision**: ${BENCH_REV_AT_START:-unknown}"
  echo "- **Date**: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- **CPU**: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; server on core $SERVER_CPU, load generator on core $GEN_CPU"
  echo "- **Kernel**: $(uname -r); **rustc**: $(rustc -V); **Janus**: $(janus --version 2>/dev/null | awk '/^Janus version/{print $NF}' || true)"
  echo "- **Load during the run**: $(cat /proc/loadavg) (load average at the end; other builds may have been running)"
  echo
  "$BENCH" report "$RESULTS"
  echo
  # Each hot-path change's before and after: kept across reruns.
  cat "$ROOT/bench/CHANGES.md"
  cat "$ROOT/bench/METHOD.md"
  echo
  cat "$ROOT/bench/NETWORKS.md"
  echo
  echo "<details><summary>Raw results (JSON lines)</summary>"
  echo
  echo '```'
  cat "$RESULTS"
  echo '```'
  echo "</details>"
} >"$OUT"
echo "wrote $OUT (raw: $RESULTS)" >&2
