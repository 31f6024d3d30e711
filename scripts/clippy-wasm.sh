#!/usr/bin/env bash
# clippy for wasm32-wasip1, where the proxy-wasm ABI module is compiled: with a rustup target
# when installed, otherwise Debian's toolchain with -Zbuild-std (needs clippy-driver from
# Debian's rust-web-clippy, which is installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-wasip1
# With Wasm SIMD, as build-wasm.sh builds the module, so its SIMD code is linted too.
simd="-C target-feature=+simd128"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  RUSTFLAGS="$simd" exec cargo clippy --locked -p tokenward-filter --target "$target" -- -D warnings
fi
if ! [ -x /usr/bin/clippy-driver ] && ! ls /usr/bin/clippy-driver* >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq rust-web-clippy >/dev/null
fi
driver=$(ls /usr/bin/clippy-driver* 2>/dev/null | head -n1)
# CLIPPY_ARGS is how cargo-clippy hands flags to the driver: deny warnings.
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
RUSTC=/usr/bin/rustc RUSTC_WORKSPACE_WRAPPER="$driver" RUSTC_BOOTSTRAP=1 \
RUSTFLAGS="-C link-self-contained=no -L native=/usr/lib/wasm32-wasi $simd" \
  /usr/bin/cargo check --locked -p tokenward-filter --target "$target" -Zbuild-std=std,panic_abort \
    --target-dir target/clippy-wasm
