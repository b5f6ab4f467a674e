#!/usr/bin/env bash
# Runs the SFU's simulated-network tests (sfu/tests/network.rs, virtual time)
# RUNS times and prints their NETSIM figures as a markdown table: median and
# min–max per figure over the runs. The runs differ (str0m's random SSRCs and
# ICE credentials, hash-map order), so one run is not the figure.
# Usage: RUNS=5 bash scripts/netsim-figures.sh > /tmp/netsim.md
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
raw=$(mktemp)
for i in $(seq 1 "$RUNS"); do
  cargo test --release -q -p tuxa-sfu --test network -- --nocapture --test-threads=1 2>/dev/null \
    | grep -E '^NETSIM ' >>"$raw" || true
done
echo "| scenario | figure | median | min–max | runs |"
echo "|---|---|---|---|---|"
awk '{ split($3, kv, "="); key=$2" "kv[1]; v=kv[2];
       if (!(key in seen)) { order[++n]=key; seen[key]=1 }
       vals[key]=vals[key]" "v }
     END { for (i=1; i<=n; i++) { k=order[i]; split(k, sk, " ");
       m=split(vals[k], a, " "); nums=0; txt="";
       for (j=1; j<=m; j++) { if (a[j] ~ /^-?[0-9.]+$/) { b[++nums]=a[j]+0 } else { txt=a[j] } }
       if (nums==0) { printf "| %s | %s | %s | — | %d |\n", sk[1], sk[2], txt, m; continue }
       for (x=1; x<=nums; x++) for (y=x+1; y<=nums; y++) if (b[y]<b[x]) { t=b[x]; b[x]=b[y]; b[y]=t }
       med=(nums%2) ? b[(nums+1)/2] : (b[nums/2]+b[nums/2+1])/2;
       extra=(nums<m) ? sprintf(" (%d× %s)", m-nums, txt) : "";
       printf "| %s | %s | %g | %g–%g%s | %d |\n", sk[1], sk[2], med, b[1], b[nums], extra, m;
       delete b } }' "$raw"
rm -f "$raw"
