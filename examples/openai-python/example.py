"""The official OpenAI SDK through tokenward: only base_url and the key change.

TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
TOKENWARD_TOKEN     a tokenward token or API key (never an OpenAI key)

Prints one JSON line per step: a normal call, two streamed calls, the Responses API, and a
refusal.
"""
import json
import os

import openai

client = openai.OpenAI(
    base_url=os.environ["TOKENWARD_BASE_URL"] + "/v1",
    api_key=os.environ["TOKENWARD_TOKEN"],
    max_retries=0,
)
messages = [{"role": "user", "content": "Say hello"}]

# 1. A normal call.
reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
print(json.dumps({"step": "chat", "content": reply.choices[0].message.content,
                  "total_tokens": reply.usage.total_tokens}))

# 2. A streamed call that asks for its usage: the last chunk carries it, as from OpenAI.
text, total = "", None
for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        total = chunk.usage.total_tokens
print(json.dumps({"step": "stream", "content": text, "total_tokens": total}))

# 3. A streamed call that does not: tokenward asks the provider for the usage all the same
#    (to count it against quotas) and takes that chunk out again, so a plain loop works.
text, chunks = "", 0
for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
    text += chunk.choices[0].delta.content or ""
    chunks += 1
print(json.dumps({"step": "plain_stream", "content": text, "chunks": chunks}))

# 4. The Responses API: metered like chat (its usage counts against quotas the same way).
response = client.responses.create(model="gpt-4o-mini", input="Say hello")
print(json.dumps({"step": "responses", "content": response.output_text,
                  "total_tokens": response.usage.total_tokens}))

# 5. A refusal: tokenward's error surfaces as the SDK's own exception, with its message.
try:
    client.chat.completions.create(model="o1-preview", messages=messages)
    print(json.dumps({"step": "refusal", "error": None}))
except openai.PermissionDeniedError as error:
    print(json.dumps({"step": "refusal", "error": type(error).__name__, "status": error.status_code,
                      "code": error.code, "message": error.message}))
