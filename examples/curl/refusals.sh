#!/usr/bin/env bash
# Every refusal a client can provoke at the gateway, with its status and error body.
#
#   GATEWAY=http://127.0.0.1:<port> TOKEN=<tokenward token> bash examples/curl/refusals.sh
#
# TOKEN needs the chat scope and may use gpt-4o* models (the demo's token: .demo/token).
# Each line: what was sent, then the status and the JSON body the gateway answered.
set -uo pipefail
: "${GATEWAY:?set GATEWAY to the gateway URL}" "${TOKEN:?set TOKEN to a tokenward token}"

chat=/v1/chat/completions
body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
call() {
  local what=$1; shift
  printf '%-34s ' "$what"
  curl -s -o /tmp/tokenward-refusal.$$ -w '%{http_code} ' "$@"
  cat /tmp/tokenward-refusal.$$
  echo
}

call "no credential"                  -X POST "$GATEWAY$chat" -H 'content-type: application/json' -d "$body"
call "a token that is not a JWT"      -X POST "$GATEWAY$chat" -H 'authorization: Bearer not.a.jwt' -d "$body"
call "an API key with a bad checksum" -X POST "$GATEWAY$chat" -H 'authorization: Bearer tw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' -d "$body"
call "two credentials"                -X POST "$GATEWAY$chat" -H "authorization: Bearer $TOKEN" -H "x-api-key: $TOKEN" -d "$body"
call "the token in the URL"           "$GATEWAY/v1/models?key=$TOKEN"
call "a model the token may not use"  -X POST "$GATEWAY$chat" -H "authorization: Bearer $TOKEN" -d '{"model":"o1-preview","messages":[]}'
call "no model in the body"           -X POST "$GATEWAY$chat" -H "authorization: Bearer $TOKEN" -d '{"messages":[]}'
call "a body that is not JSON"        -X POST "$GATEWAY$chat" -H "authorization: Bearer $TOKEN" -d '{"model":'
call "a path no route serves"         -X POST "$GATEWAY/v1/audio/speech" -H "authorization: Bearer $TOKEN" -d "$body"
# Refused by Envoy before tokenward runs, in the same JSON shape (envoy.yaml's local_reply_config).
call "headers larger than 60 KiB"     -X POST "$GATEWAY$chat" -H "authorization: Bearer $TOKEN" -H "x-padding: $(head -c 61440 /dev/zero | tr '\0' a)" -d "$body"
call "an encoded slash in the path"   -X POST "$GATEWAY/v1/chat%2Fcompletions" -H "authorization: Bearer $TOKEN" -d "$body"
rm -f /tmp/tokenward-refusal.$$
