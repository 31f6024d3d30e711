#!/usr/bin/env bash
# Instructions a request costs the module in node's V8 (bench/wasm-host/host.cjs), counted by
# valgrind: the difference between two runs of different lengths, so start-up cancels out.
# Steady whatever else the machine runs, unlike time. Under V8's baseline compiler (Liftoff)
# by default; NODE_FLAGS="" for V8's own tiering. Needs valgrind and node.
#
#   bench/wasm-host/count.sh MODULE DIR/hot.json DIR/token
set -euo pipefail
module=$1 config=$2 token=$3
flags=${NODE_FLAGS---liftoff-only}
here=$(dirname "$0")
run() {
  # shellcheck disable=SC2086 # the flags are words
  WARM=500 valgrind --tool=callgrind --callgrind-out-file=/dev/null --smc-check=all-non-file \
    node $flags --single-threaded "$here/host.cjs" "$module" "$config" "$token" "$1" 2>&1 \
    | awk '/Collected/ {print $4}'
}
short=$(run 1000)
long=$(run 6000)
echo "$module: $(( (long - short) / 5000 )) instructions a request"
