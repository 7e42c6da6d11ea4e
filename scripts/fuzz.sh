#!/usr/bin/env bash
# Runs fuzz targets given as package:Target (e.g. ./evidence:FuzzVerify), each for FUZZTIME
# (a duration, or Nx for N new inputs), minimizing each newly interesting input for at most
# FUZZMINIMIZE (default 1000x executions; go test's default of 60 s per input leaves a run
# seeded with 30-70 KB event logs minimizing one input for its whole time, executing nothing
# new). FUZZSHORT=1 passes -test.short: the targets then seed with small forged logs instead of
# the real ones (the short run in `make test`).
#
# Each package's fuzz-instrumented test binary is built once with `go test -c` into bin/fuzz/,
# which relinks it only when the package or a dependency changed (`go test -fuzz` relinks on
# every run: seconds per target), and run as `go test -fuzz` runs it: from the package
# directory, with the interesting inputs kept in `go env GOCACHE`/fuzz/<import path>.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
FUZZMINIMIZE=${FUZZMINIMIZE:-1000x}
cache=$($GO env GOCACHE)/fuzz
mkdir -p bin/fuzz
flags=(-test.run='^$' -test.fuzztime="$FUZZTIME" -test.fuzzminimizetime="$FUZZMINIMIZE")
if [ "${FUZZSHORT:-0}" = 1 ]; then
  flags+=(-test.short)
fi
for t in "$@"; do
  pkg=${t%%:*} name=${t#*:}
  imp=$($GO list "$pkg")
  bin=$PWD/bin/fuzz/$(echo "${imp#*/passport/}" | tr / _).test
  # -fuzz here only asks for the coverage instrumentation; the target is chosen at run time.
  $GO test -c -fuzz="^$name\$" -o "$bin" "$pkg"
  echo "fuzz $name ($pkg) for $FUZZTIME"
  (cd "$pkg" && "$bin" "${flags[@]}" -test.fuzz="^$name\$" -test.fuzzcachedir="$cache/$imp")
done
