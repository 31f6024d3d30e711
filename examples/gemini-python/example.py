"""The official Google Gen AI SDK (google-genai) through tokenward: only base_url and the key
change.

TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
TOKENWARD_TOKEN     a tokenward token or API key (never a Gemini key); the SDK sends it as
                    x-goog-api-key, which tokenward replaces with the provider's key

Prints one JSON line per step: a normal call, a streamed call, counting tokens, embeddings
(one content, then several), the model list, and a refusal.
"""
import json
import os

from google import genai
from google.genai import errors, types

# The SDK's own default API version (v1 in this release; /v1beta when asked for): the
# gateway routes both.
client = genai.Client(
    api_key=os.environ["TOKENWARD_TOKEN"],
    http_options=types.HttpOptions(base_url=os.environ["TOKENWARD_BASE_URL"]),
)
model = "gemini-2.0-flash"
prompt = "Say hello"

# 1. A normal call.
reply = client.models.generate_content(model=model, contents=prompt)
print(json.dumps({"step": "chat", "content": reply.text,
                  "prompt_tokens": reply.usage_metadata.prompt_token_count,
                  "output_tokens": reply.usage_metadata.candidates_token_count,
                  "total_tokens": reply.usage_metadata.total_token_count}))

# 2. A streamed call: every chunk carries the usage so far; the last one has the total.
text, chunks, usage = "", 0, None
for chunk in client.models.generate_content_stream(model=model, contents=prompt):
    text += chunk.text or ""
    chunks += 1
    usage = chunk.usage_metadata or usage
print(json.dumps({"step": "stream", "content": text, "chunks": chunks,
                  "output_tokens": usage.candidates_token_count,
                  "total_tokens": usage.total_token_count}))

# 3. Counting tokens: routed like generateContent, not metered (it generates nothing).
counted = client.models.count_tokens(model=model, contents=prompt)
print(json.dumps({"step": "count_tokens", "total_tokens": counted.total_tokens}))

# 4. Embeddings: the SDK sends batchEmbedContents, one request per content.
single = client.models.embed_content(model="gemini-embedding-001", contents="Say hello")
print(json.dumps({"step": "embed", "embeddings": len(single.embeddings),
                  "dimensions": len(single.embeddings[0].values)}))
batch = client.models.embed_content(model="gemini-embedding-001",
                                    contents=["Say hello", "Say goodbye", "Say thanks"])
print(json.dumps({"step": "embed_batch", "embeddings": len(batch.embeddings),
                  "dimensions": [len(e.values) for e in batch.embeddings]}))

# 5. The model list.
names = [m.name for m in client.models.list()]
print(json.dumps({"step": "models", "names": names}))

# 6. A refusal: tokenward answers in Google's error shape, so the SDK raises its own
#    ClientError with the status and tokenward's message; the code is the ErrorInfo reason.
try:
    client.models.generate_content(model="gemini-2.5-pro", contents=prompt)
    print(json.dumps({"step": "refusal", "error": None}))
except errors.ClientError as error:
    details = error.details.get("error", {}).get("details", []) if isinstance(error.details, dict) else []
    reason = next((d.get("reason") for d in details if isinstance(d, dict) and "reason" in d), None)
    print(json.dumps({"step": "refusal", "error": type(error).__name__, "code": error.code,
                      "status": error.status, "reason": reason, "message": error.message}))
