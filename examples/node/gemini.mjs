// The official Google Gen AI Node SDK (@google/genai) through tokenward: only the base URL
// and the key change.
//
// TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
// TOKENWARD_TOKEN     a tokenward token or API key (never a Gemini key); the SDK sends it as
//                     x-goog-api-key, which tokenward replaces with the provider's key
//
// Prints one JSON line per step: a normal call, a streamed call, counting tokens, embeddings
// (one content, then several), the model list, and a refusal.
import { ApiError, GoogleGenAI } from '@google/genai';

// The SDK's own default API version (v1 in this release; /v1beta when asked for): the
// gateway routes both.
const ai = new GoogleGenAI({
  apiKey: process.env.TOKENWARD_TOKEN,
  httpOptions: { baseUrl: process.env.TOKENWARD_BASE_URL },
});
const model = 'gemini-2.0-flash';
const contents = 'Say hello';
const print = (line) => console.log(JSON.stringify(line));

// 1. A normal call.
const reply = await ai.models.generateContent({ model, contents });
print({
  step: 'chat', content: reply.text, prompt_tokens: reply.usageMetadata.promptTokenCount,
  output_tokens: reply.usageMetadata.candidatesTokenCount, total_tokens: reply.usageMetadata.totalTokenCount,
});

// 2. A streamed call: every chunk carries the usage so far; the last one has the total.
let text = '';
let chunks = 0;
let usage = null;
for await (const chunk of await ai.models.generateContentStream({ model, contents })) {
  text += chunk.text ?? '';
  chunks += 1;
  usage = chunk.usageMetadata ?? usage;
}
print({
  step: 'stream', content: text, chunks, output_tokens: usage.candidatesTokenCount,
  total_tokens: usage.totalTokenCount,
});

// 3. Counting tokens: routed like generateContent, not metered (it generates nothing).
const counted = await ai.models.countTokens({ model, contents });
print({ step: 'count_tokens', total_tokens: counted.totalTokens });

// 4. Embeddings: the SDK sends batchEmbedContents, one request per content.
const single = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: 'Say hello' });
print({ step: 'embed', embeddings: single.embeddings.length, dimensions: single.embeddings[0].values.length });
const batch = await ai.models.embedContent({
  model: 'gemini-embedding-001', contents: ['Say hello', 'Say goodbye', 'Say thanks'],
});
print({ step: 'embed_batch', embeddings: batch.embeddings.length, dimensions: batch.embeddings.map((e) => e.values.length) });

// 5. The model list.
const names = [];
for await (const m of await ai.models.list()) names.push(m.name);
print({ step: 'models', names });

// 6. A refusal: tokenward answers in Google's error shape, so the SDK throws its own
//    ApiError with the status; its message is the body, tokenward's message and code in it.
try {
  await ai.models.generateContent({ model: 'gemini-2.5-pro', contents });
  print({ step: 'refusal', error: null });
} catch (error) {
  if (!(error instanceof ApiError)) throw error;
  const body = JSON.parse(error.message).error;
  const reason = body.details?.find((d) => d.reason)?.reason ?? null;
  print({
    step: 'refusal', error: error.name, status: error.status, google_status: body.status,
    reason, message: body.message,
  });
}
