#!/usr/bin/env bash
# Instructions a request costs the module in node's V8 (bench/wasm-host/host.cjs), counted by
# valgrind: the difference between two runs of different lengths, so start-up cancels out.
# Steady whatever else the machine runs, unlike time. Under V8's baseline compiler (Liftoff)
# by default; NODE_FLAGS="" for V8's own tiering. Needs valgrind and node.
#
#   bench/wasm-host/count.sh MODULE DIR/hot.json DIR/token
#   STREAM=DIR/stream.sse bench/wasm-host/count.sh MODULE DIR/hot.json DIR/chat-token
#
# A request is then a whole 2 MB stream: SHORT and LONG (requests in the two runs) default to
# 10 and 110 for streams, 1000 and 6000 otherwise.
set -euo pipefail
module=$1 config=$2 token=$3
flags=${NODE_FLAGS---liftoff-only}
here=$(dirname "$0")
if [ -n "${STREAM:-}" ]; then
  short=${SHORT:-10} long=${LONG:-110} warm=${WARM:-1}
else
  short=${SHORT:-1000} long=${LONG:-6000} warm=${WARM:-500}
fi
run() {
  # shellcheck disable=SC2086 # the flags are words
  WARM=$warm valgrind --tool=callgrind --callgrind-out-file=/dev/null --smc-check=all-non-file \
    node $flags --single-threaded "$here/host.cjs" "$module" "$config" "$token" "$1" 2>&1 \
    | awk '/Collected/ {print $4}'
}
few=$(run "$short")
many=$(run "$long")
echo "$module: $(( (many - few) / (long - short) )) instructions a request"
