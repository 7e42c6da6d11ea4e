#!/usr/bin/env bash
# Counts the instructions per call of evidence.Verifier.Verify and of go-tpm-tools'
# server.VerifyAttestation on BenchmarkAppraisal's evidence (internal/appraisalcost) under
# valgrind's callgrind, with the garbage collector off and one thread, and prints them with the
# ratios BenchmarkAppraisal reports (x-library, x-library+decode). Unlike wall time on a shared
# machine, the counts repeat to within a fraction of a percent. Needs valgrind (Debian package);
# about 2 minutes. N (default 20) calls per loop.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
N=${N:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=$($GO list -m -f '{{.Dir}}' github.com/google/go-tpm-tools)/internal/test/eventlogs/ubuntu-2404-amd-sevsnp.bin
$GO build -o "$tmp/appraisalcost" ./internal/appraisalcost
# cpu.rdtscp=off: valgrind does not emulate RDTSCP, which the Go runtime uses when present.
GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off \
  valgrind --tool=callgrind --dump-before=main.mark --callgrind-out-file="$tmp/cg" \
  "$tmp/appraisalcost" "$N" "$log" >"$tmp/labels" 2>"$tmp/valgrind.log" ||
  { cat "$tmp/valgrind.log" >&2; exit 1; }
i=0
while read -r name op n; do
  i=$((i + 2))
  echo "$name $op $(( $(grep '^summary:' "$tmp/cg.$i" | awk '{print $2}') / n ))"
done <"$tmp/labels" | awk '
  { ir[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END {
    printf "%-34s %12s %15s %12s %9s %16s\n", "evidence/op", "library", "decode+library", "passport", "x-library", "x-library+decode"
    for (j = 1; j <= k; j++) {
      c = order[j]
      for (o = 0; o < 2; o++) {
        op = o ? "passport-chain-cached" : "passport-pinned"
        printf "%-34s %12d %15d %12d %9.3f %16.3f\n", c "/" op, ir[c, "library"], ir[c, "decode+library"], ir[c, op], ir[c, op] / ir[c, "library"], ir[c, op] / ir[c, "decode+library"]
      }
    }
  }'
