#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (libFuzzer through the libfuzzer-sys crate, coverage from
# stable rustc's sancov pass: no nightly, no cargo-fuzz) and runs each for a bounded time.
#
#   FUZZ_SECONDS=60      seconds per target
#   FUZZ_TARGETS="a b"   which targets (default: every one in fuzz/fuzz_targets/)
#   FUZZ_PARALLEL=1      targets run at once
#   FUZZ_WORK=dir        scratch: new corpus entries, crash inputs, logs (default fuzz/target/work)
#   FUZZ_MERGE=1         afterwards, add to fuzz/corpus/<target> the inputs this run found
#                        that bring new coverage, minimized (otherwise the repo corpus is
#                        only read)
#
# Prints, per target, the executions and the crashes; exits non-zero on any crash, with the
# crashing input's path and the panic message. Reproduce one with
#   fuzz/target/<host>/release/<target> <crash file>
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-60}
parallel=${FUZZ_PARALLEL:-1}
work=${FUZZ_WORK:-$root/fuzz/target/work}
case "$work" in /*) ;; *) work=$root/$work ;; esac
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

command -v c++ >/dev/null 2>&1 || { echo "no C++ compiler (libFuzzer is built from source): run scripts/install-deps.sh" >&2; exit 1; }

# --target keeps these flags off build scripts and proc macros, which link without libFuzzer.
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
unset CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
build_start=$SECONDS
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target-dir fuzz/target \
  --target "$host" --bins
echo "==> fuzz build: $((SECONDS - build_start)) s"
bin_dir=$root/fuzz/target/$host/release

run_one() {
  local t=$1 dir=$work/$1
  rm -rf "$dir/artifacts" && mkdir -p "$dir/corpus" "$dir/artifacts"
  local args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
    -artifact_prefix="$dir/artifacts/")
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  # New inputs go to the first directory (scratch); the repo corpus is read only.
  "$bin_dir/$t" "${args[@]}" "$dir/corpus" "fuzz/corpus/$t" >"$dir/log" 2>&1 || true
}

start=$SECONDS
running=0
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "no fuzz target $t" >&2; exit 1; }
  echo "==> fuzzing $t for ${seconds}s"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
echo "==> fuzzing: $((SECONDS - start)) s"

failed=0
printf '%-12s %14s %8s\n' target executions crashes
for t in "${targets[@]}"; do
  dir=$work/$t
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  crashes=$(find "$dir/artifacts" -type f | wc -l)
  printf '%-12s %14s %8s\n' "$t" "${execs:-?}" "$crashes"
  if [ "$crashes" -gt 0 ] || [ -z "$execs" ]; then failed=1; fi
done
for t in "${targets[@]}"; do
  dir=$work/$t
  if [ -n "$(find "$dir/artifacts" -type f)" ] || ! grep -q '^stat::number_of_executed_units' "$dir/log"; then
    echo "==> $t failed; log: $dir/log"
    grep -E -A3 "panicked at|^==[0-9]+== ERROR|SUMMARY" "$dir/log" | head -n 20 || true
    find "$dir/artifacts" -type f -printf 'crashing input: %p\n'
    echo "reproduce: $bin_dir/$t <crashing input>"
  fi
done

if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  for t in "${targets[@]}"; do
    # libFuzzer adds to the first directory only the inputs of the second that bring coverage
    # it lacks: the named seeds stay, the scratch finds are minimized into them.
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    "$bin_dir/$t" -merge=1 "fuzz/corpus/$t" "$work/$t/corpus" >"$work/$t/merge.log" 2>&1
    echo "==> $t: corpus $before -> $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
  done
fi
exit "$failed"
