// The official Anthropic Node SDK through tokenward: only baseURL and the key change.
//
// TOKENWARD_BASE_URL  the gateway (Envoy), e.g. http://127.0.0.1:10000
// TOKENWARD_TOKEN     a tokenward token or API key (never an Anthropic key); the SDK sends it
//                     as x-api-key, which tokenward replaces with the provider's key
//
// Prints one JSON line per step: a normal call, a streamed call, counting tokens, and a
// refusal.
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic({
  baseURL: process.env.TOKENWARD_BASE_URL,
  apiKey: process.env.TOKENWARD_TOKEN,
  maxRetries: 0,
});
const model = 'claude-3-5-haiku-latest';
const messages = [{ role: 'user', content: 'Hello there' }];
const print = (line) => console.log(JSON.stringify(line));

// 1. A normal call.
const message = await client.messages.create({ model, max_tokens: 64, messages });
print({ step: 'chat', content: message.content[0].text, output_tokens: message.usage.output_tokens });

// 2. A streamed call: the SDK's helper collects the text and the final message.
let text = '';
const stream = client.messages.stream({ model, max_tokens: 64, messages });
stream.on('text', (delta) => { text += delta; });
const final = await stream.finalMessage();
print({ step: 'stream', content: text, output_tokens: final.usage.output_tokens });

// 3. Counting tokens: routed like messages, not metered (it generates nothing).
const counted = await client.messages.countTokens({ model, messages });
print({ step: 'count_tokens', input_tokens: counted.input_tokens });

// 4. A refusal: tokenward's error surfaces as the SDK's own error class, with its body.
try {
  await client.messages.create({ model: 'claude-opus-4-1', max_tokens: 64, messages });
  print({ step: 'refusal', error: null });
} catch (error) {
  if (!(error instanceof Anthropic.PermissionDeniedError)) throw error;
  print({
    step: 'refusal', error: error.constructor.name, status: error.status, type: error.type,
    code: error.errorCode, message: error.apiMessage,
  });
}
