#!/bin/sh
# The entrypoint of the bundled docker setup's control-plane image.
#   compose-start.sh control-plane   first run: init, providers (mock keys, sealed), routes,
#                                    a plan, a token in $DATA/token; development certificates
#                                    in $TLS (kept once made); then tokenward serve over TLS
#   compose-start.sh mock-providers  the mock providers on 127.0.0.1:9101-9103
# Development mode (--dev): the master key is kept in the data volume, the CA's key next to the
# certificates Envoy mounts. Not for production.
#
# The HA profile runs two of these over one Postgres (TOKENWARD_DATABASE_URL), sharing the data
# volume (the master key) and the certificates: the first replica sets the installation up
# (once: it is in the database), both serve. TOKENWARD_REPLICA_ID names each, and
# TOKENWARD_ADMIN_PORT / TOKENWARD_XDS_PORT give the second its own ports (envoy-xds.yaml lists
# 127.0.0.1:18000 and :18001).
set -eu
DATA=${TOKENWARD_DATA_DIR:-/data}
TLS=${TOKENWARD_TLS_DIR:-/tls}
ADMIN_PORT=${TOKENWARD_ADMIN_PORT:-8080}
XDS_PORT=${TOKENWARD_XDS_PORT:-18000}
tw() { tokenward --dev --data-dir "$DATA" "$@"; }

# Whether this installation exists yet: SQLite's file, or (Postgres) a configuration to render
# (an uninitialised database has no issuer).
initialised() {
  if [ -n "${TOKENWARD_DATABASE_URL:-}" ]; then
    tw config render >/dev/null 2>&1
  else
    [ -f "$DATA/tokenward.db" ]
  fi
}

case "${1:-control-plane}" in
mock-providers)
  exec mock_providers
  ;;
control-plane)
  if [ -n "${TOKENWARD_DATABASE_URL:-}" ]; then
    # Postgres may still be starting: wait until the schema is in place.
    tries=0
    until tw migrate >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ "$tries" -lt 60 ] || { echo "the database at TOKENWARD_DATABASE_URL does not answer" >&2; exit 1; }
      sleep 1
    done
  fi
  if ! initialised; then
    tw init --issuer https://tokenward.local --audience tokenward-gateway
    # The mocks accept any key; these placeholders are sealed like real ones would be.
    echo mock-openai-key | tw provider add --name openai --style openai --authority api.openai.com --credential-stdin
    echo mock-anthropic-key | tw provider add --name anthropic --style anthropic --authority api.anthropic.com --credential-stdin
    echo mock-gemini-key | tw provider add --name gemini --style gemini --authority generativelanguage.googleapis.com --credential-stdin
    tw route add --name openai-chat --path-prefix /v1/chat/completions --method POST --scope chat --model-source body --provider openai
    tw route add --name openai-models --path-prefix /v1/models --method GET --scope models --provider openai
    tw route add --name anthropic-messages --path-prefix /v1/messages --method POST --scope chat --model-source body --provider anthropic
    tw route add --name gemini-generate --path-prefix /v1beta/models/ --method POST --scope chat --model-source gemini_path --model-provider 'gemini-*=gemini'
    tw plan set demo --limit per-minute:requests:minute:60
    tw plan default demo
    tw token mint --subject compose-user --scope chat --scope models --model 'gpt-4o*' --model 'claude-*' --model 'gemini-*' > "$DATA/token"
    echo "a token for compose-user is in $DATA/token (docker compose exec control-plane cat $DATA/token)"
  fi
  # A CA, the server's certificate and the client certificate of envoy-xds.yaml's node; the
  # .crt files come last, so Envoy (which waits for this one, see the compose file's
  # healthcheck) finds its key complete.
  tokenward tls dev-certs --out "$TLS" --node-id tokenward-gateway-1
  # Envoy and the mocks share this container's network: the same addresses as `make demo`.
  # The admin API is published (0.0.0.0), so TLS; ADS is mutual TLS.
  exec tokenward --dev --data-dir "$DATA" serve --listen "0.0.0.0:$ADMIN_PORT" --xds-listen "127.0.0.1:$XDS_PORT" \
    --tls-cert "$TLS/server.crt" --tls-key "$TLS/server.key" --xds-client-ca "$TLS/ca.crt" \
    --wasm-path dist/tokenward.wasm \
    --upstream openai=127.0.0.1:9101 --upstream anthropic=127.0.0.1:9102 --upstream gemini=127.0.0.1:9103
  ;;
*)
  echo "usage: compose-start.sh control-plane|mock-providers" >&2
  exit 2
  ;;
esac
