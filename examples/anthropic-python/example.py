"""The official Anthropic SDK through tokenward: only base_url and the key change.

TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
TOKENWARD_TOKEN     a tokenward token or API key (never an Anthropic key); the SDK sends it
                    as x-api-key, which tokenward replaces with the provider's key

Prints one JSON line per step: a normal call, a streamed call, and a refusal.
"""
import json
import os

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TOKENWARD_BASE_URL"],
    api_key=os.environ["TOKENWARD_TOKEN"],
    max_retries=0,
)
messages = [{"role": "user", "content": "Hello there"}]

# 1. A normal call.
message = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=messages)
print(json.dumps({"step": "chat", "content": message.content[0].text,
                  "output_tokens": message.usage.output_tokens}))

# 2. A streamed call.
with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=messages) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
print(json.dumps({"step": "stream", "content": text, "output_tokens": final.usage.output_tokens}))

# 3. Counting tokens: routed like messages, not metered (it generates nothing).
counted = client.messages.count_tokens(model="claude-3-5-haiku-latest", messages=messages)
print(json.dumps({"step": "count_tokens", "input_tokens": counted.input_tokens}))

# 4. A refusal: tokenward's error surfaces as the SDK's own exception, its code where the SDK
#    looks for one (error.error_code).
try:
    client.messages.create(model="claude-opus-4-1", max_tokens=64, messages=messages)
    print(json.dumps({"step": "refusal", "error": None}))
except anthropic.PermissionDeniedError as error:
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
    print(json.dumps({"step": "refusal", "error": type(error).__name__, "status": error.status_code,
                      "type": detail.get("type"), "code": error.error_code,
                      "message": detail.get("message")}))
