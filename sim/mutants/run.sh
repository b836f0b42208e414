#!/bin/sh
# Applies each mutant in sim/mutants/ in turn, runs the suites that should catch it
# and prints a table: "caught" when a suite failed (as it must), "MISSED" when all
# passed. Not run in CI: each mutant rebuilds core and everything above it.
#
#   sim/mutants/run.sh                 # every mutant
#   sim/mutants/run.sh 03-heartbeat    # the mutants whose name starts so
#
# Suites: core's unit tests, the pure simulator (TERN_VOPR_STEPS, default 3
# million steps), and node's DVR tests (`dvr::`: Dvr on MemStore and FsStore, and
# the crash test of FsStore over the crash-recording filesystem). The working tree
# must be clean; each patch is reverted after its run, also when interrupted.
set -u
cd "$(dirname "$0")/../.." || exit 2
if ! git diff --quiet; then
    echo "the working tree has changes; commit or stash them first" >&2
    exit 2
fi
steps=${TERN_VOPR_STEPS:-3000000}
current=""
trap 'if [ -n "$current" ]; then git apply -R "$current"; fi; exit 130' INT TERM
printf '%-34s %-12s %-12s %-12s\n' mutant "core tests" "pure sim" "node dvr"
for p in sim/mutants/${1:-}*.patch; do
    name=$(basename "$p" .patch)
    git apply "$p" || { echo "$name: does not apply" >&2; continue; }
    current=$p
    if cargo test -q -p tern-core --lib >/dev/null 2>&1; then unit=MISSED; else unit=caught; fi
    if TERN_VOPR_STEPS=$steps cargo test -q -p tern-sim --test vopr >/dev/null 2>&1; then
        sim=MISSED
    else
        sim=caught
    fi
    if cargo test -q -p tern-node --lib dvr:: >/dev/null 2>&1; then dvr=MISSED; else dvr=caught; fi
    git apply -R "$p"
    current=""
    printf '%-34s %-12s %-12s %-12s\n' "$name" "$unit" "$sim" "$dvr"
done
