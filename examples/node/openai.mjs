// The official OpenAI Node SDK through tokenward: only baseURL and the key change.
//
// TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
// TOKENWARD_TOKEN     a tokenward token or API key (never an OpenAI key)
//
// Prints one JSON line per step: a normal call, two streamed calls, the Responses API, and a
// refusal.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: `${process.env.TOKENWARD_BASE_URL}/v1`,
  apiKey: process.env.TOKENWARD_TOKEN,
  maxRetries: 0,
});
const messages = [{ role: 'user', content: 'Say hello' }];
const print = (line) => console.log(JSON.stringify(line));

// 1. A normal call.
const reply = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
print({ step: 'chat', content: reply.choices[0].message.content, total_tokens: reply.usage.total_tokens });

// 2. A streamed call that asks for its usage: the last chunk carries it, as from OpenAI.
let text = '';
let total = null;
const withUsage = await client.chat.completions.create({
  model: 'gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of withUsage) {
  if (chunk.choices.length > 0) text += chunk.choices[0].delta.content ?? '';
  if (chunk.usage) total = chunk.usage.total_tokens;
}
print({ step: 'stream', content: text, total_tokens: total });

// 3. A streamed call that does not: tokenward asks the provider for the usage all the same
//    (to count it against quotas) and takes that chunk out again, so a plain loop works.
text = '';
let chunks = 0;
const plain = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
for await (const chunk of plain) {
  text += chunk.choices[0].delta.content ?? '';
  chunks += 1;
}
print({ step: 'plain_stream', content: text, chunks });

// 4. The Responses API: metered like chat.
const response = await client.responses.create({ model: 'gpt-4o-mini', input: 'Say hello' });
print({ step: 'responses', content: response.output_text, total_tokens: response.usage.total_tokens });

// 5. A refusal: tokenward's error surfaces as the SDK's own error class, with its code.
try {
  await client.chat.completions.create({ model: 'o1-preview', messages });
  print({ step: 'refusal', error: null });
} catch (error) {
  if (!(error instanceof OpenAI.PermissionDeniedError)) throw error;
  print({
    step: 'refusal', error: error.constructor.name, status: error.status, code: error.code,
    type: error.type, message: error.message,
  });
}
