#!/usr/bin/env bash
# Builds dist/tokenward.wasm: size-optimized, LTO, panic=abort, stripped (profile "wasm").
# Uses a rustup toolchain's wasm32-wasip1 target when installed, otherwise Debian's rustc-web
# with -Zbuild-std (rustup cannot download targets on machines without its servers).
# `build-wasm.sh <package> <name>` builds another workspace module the same way into
# dist/<name>.wasm: make bench builds its do-nothing floor with `tokenward-bench-floor floor`.
set -euo pipefail
cd "$(dirname "$0")/.."

package="${1:-tokenward-filter}"
name="${2:-tokenward}"
target=wasm32-wasip1
out="${CARGO_TARGET_DIR:-target}/$target/wasm/${package//-/_}.wasm"
# Wasm SIMD (128-bit): the byte searches that look through response streams (memchr) use it.
# Every Wasm runtime Envoy ships (V8, and Wasmtime and WAMR where built in) runs it.
simd="-C target-feature=+simd128"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  RUSTFLAGS="$simd" cargo build --locked -p "$package" --profile wasm --target "$target"
else
  for tool in /usr/bin/rustc /usr/bin/cargo; do
    [ -x "$tool" ] || { echo "$tool missing: run scripts/install-deps.sh (or make deps)" >&2; exit 1; }
  done
  # Building std here also lets panics abort without their formatting machinery (the filter
  # never panics by design; -Cpanic=immediate-abort keeps that code out of the module) and
  # picks std's size-optimized implementations. An aborting panic prints nothing, so the
  # file, line and column each panic site would carry are left out too
  # (-Zlocation-detail=none: 3 KB).
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C link-self-contained=no -L native=/usr/lib/wasm32-wasi -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none $simd" \
    /usr/bin/cargo build --locked -p "$package" --profile wasm --target "$target" \
      -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
fi
mkdir -p dist
if command -v wasm-opt >/dev/null 2>&1; then
  # binaryen's size pass; the features are those rustc enables for wasm32-wasip1, and SIMD.
  wasm-opt -Oz --converge --enable-bulk-memory --enable-simd --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    -o "dist/$name.wasm" "$out"
else
  echo "wasm-opt not found (Debian package binaryen): the module is larger than it could be" >&2
  cp "$out" "dist/$name.wasm"
fi
size=$(stat -c %s "dist/$name.wasm")
echo "dist/$name.wasm: $size bytes"
