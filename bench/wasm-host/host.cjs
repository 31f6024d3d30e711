// A minimal proxy-wasm host in node's V8, to measure the module's own work on a request
// without Envoy: host calls are cheap JavaScript here, so what is left is the Wasm. Not the
// ABI in full: what a cached GET /v1/models uses (header maps, the clock, shared data,
// metrics, the plugin configuration). Inputs from `tokenward-e2e --bin wasm_host_inputs DIR`.
//
//   node host.cjs MODULE DIR/hot.json DIR/token [REQUESTS]
//   STREAM=DIR/stream.sse node host.cjs MODULE DIR/hot.json DIR/chat-token [REQUESTS]
//   TOKENS=DIR/cold-tokens node host.cjs MODULE DIR/hot.json DIR/token [REQUESTS]
//
// Prints CPU µs a request; bench/wasm-host/count.sh counts instructions instead (valgrind),
// which the rest of the machine does not disturb. WARM sets the requests run first (20000).
// With STREAM, each request is a streaming chat completion whose answer is that file, fed in
// chunks of 1–4 KB as `make bench`'s upstream writes it (USAGE=no: the client did not ask for
// the usage, so the filter takes the usage-only chunk out). With TOKENS, each request carries
// the next of that file's tokens, one per line: none is cached yet (the cold path), as long
// as the file holds more tokens than WARM + REQUESTS.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const [modulePath, configPath, tokenPath] = process.argv.slice(2, 5);
const requests = Number(process.argv[5] || 20000);
if (!tokenPath) {
  console.error('usage: node host.cjs MODULE CONFIG TOKEN [REQUESTS]');
  process.exit(2);
}
const config = fs.readFileSync(configPath);
const token = fs.readFileSync(tokenPath, 'utf8').trim();
const tokens = process.env.TOKENS
  ? fs.readFileSync(process.env.TOKENS, 'utf8').split('\n').filter((t) => t)
  : null;
const stream = process.env.STREAM ? fs.readFileSync(process.env.STREAM) : null;
const asksUsage = process.env.USAGE !== 'no';
// The stream cut as tests/src/streaming.rs cuts it: xorshift sizes over 1024..=4096.
function chunks(body) {
  const out = [];
  let seed = 0x2545f491;
  for (let at = 0; at < body.length;) {
    seed = (seed ^ (seed << 13)) >>> 0;
    seed = (seed ^ (seed >>> 17)) >>> 0;
    seed = (seed ^ (seed << 5)) >>> 0;
    const size = Math.min(1024 + (seed % 3073), body.length - at);
    out.push(body.subarray(at, at + size));
    at += size;
  }
  return out;
}
const streamChunks = stream ? chunks(stream) : [];

let vm;
let buffer;
let bytes;
let view;
function memory() {
  if (buffer !== vm.memory.buffer) {
    buffer = vm.memory.buffer;
    bytes = new Uint8Array(buffer);
    view = new DataView(buffer);
  }
}
const text = (at, size) => (memory(), Buffer.from(bytes.subarray(at, at + size)).toString('latin1'));
// Copies `data` into memory the module allocates, and writes where and how much.
function give(data, pointerAt, sizeAt) {
  const at = vm.proxy_on_memory_allocate(data.length);
  memory();
  bytes.set(data, at);
  view.setUint32(pointerAt, at, true);
  view.setUint32(sizeAt, data.length, true);
}
// proxy-wasm's header map: a count, (name length, value length) pairs, then each name and
// value followed by a NUL.
function headerMap(pairs) {
  let size = 4;
  for (const [name, value] of pairs) size += 8 + name.length + value.length + 2;
  const out = Buffer.alloc(size);
  out.writeUInt32LE(pairs.length, 0);
  let at = 4;
  for (const [name, value] of pairs) {
    out.writeUInt32LE(name.length, at);
    out.writeUInt32LE(value.length, at + 4);
    at += 8;
  }
  for (const [name, value] of pairs) {
    at += out.write(name, at, 'latin1') + 1;
    at += out.write(value, at, 'latin1') + 1;
  }
  return new Uint8Array(out);
}
const OK = 0;
const NOT_FOUND = 1;
const REQUEST_HEADERS = 0;
const HTTP_REQUEST_BODY = 0;
const HTTP_RESPONSE_BODY = 1;
const PLUGIN_CONFIGURATION = 7;
const requestBody = Buffer.from(asksUsage
  ? '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say something long."}]}'
  : '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say something long."}]}');
const requestHeadersWith = (token) => headerMap(stream ? [
  [':method', 'POST'], [':path', '/v1/chat/completions'], [':scheme', 'http'],
  [':authority', '127.0.0.1:10000'], ['authorization', `Bearer ${token}`],
  ['content-type', 'application/json'], ['content-length', String(requestBody.length)],
  ['x-tokenward-cluster', 'openai'],
  ['x-forwarded-proto', 'http'], ['x-request-id', '6f1a7c3e-2b8d-4b4a-9c1e-0d3f5a7b9c2d'],
] : [
  [':method', 'GET'], [':path', '/v1/models'], [':scheme', 'http'],
  [':authority', '127.0.0.1:10000'], ['authorization', `Bearer ${token}`],
  ['x-forwarded-proto', 'http'], ['x-request-id', '6f1a7c3e-2b8d-4b4a-9c1e-0d3f5a7b9c2d'],
]);
let requestHeaders = requestHeadersWith(token);
const responseHeaders = headerMap(stream ? [
  [':status', '200'], ['content-type', 'text/event-stream; charset=utf-8'],
  ['date', 'Sun, 06 Dec 2026 03:00:00 GMT'], ['server', 'envoy'],
] : [
  [':status', '200'], ['content-length', '2'], ['content-type', 'text/plain'],
  ['date', 'Sun, 06 Dec 2026 03:00:00 GMT'], ['server', 'envoy'],
]);
// The body the module may read now: the request's, then each chunk of the answer's.
let body = requestBody;
const shared = new Map();
let casToken = 1;
const env = {
  proxy_log: (level, at, size) => {
    if (level >= 3) console.error(`log ${level}: ${text(at, size)}`);
    return OK;
  },
  proxy_get_buffer_bytes: (type, start, max, pointerAt, sizeAt) => {
    if (type === PLUGIN_CONFIGURATION) {
      give(config, pointerAt, sizeAt);
      return OK;
    }
    if (type !== HTTP_REQUEST_BODY && type !== HTTP_RESPONSE_BODY) return NOT_FOUND;
    // The whole body, as Envoy's callbacks ask for it, without a new view each time.
    give(start === 0 && max >= body.length ? body : body.subarray(start, start + max), pointerAt, sizeAt);
    return OK;
  },
  proxy_get_header_map_pairs: (type, pointerAt, sizeAt) => {
    give(type === REQUEST_HEADERS ? requestHeaders : responseHeaders, pointerAt, sizeAt);
    return OK;
  },
  proxy_get_header_map_value: () => NOT_FOUND,
  proxy_replace_header_map_value: () => OK,
  proxy_add_header_map_value: () => OK,
  proxy_remove_header_map_value: () => OK,
  proxy_set_header_map_pairs: () => OK,
  proxy_get_current_time_nanoseconds: (at) => {
    memory();
    view.setBigUint64(at, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_get_shared_data: (keyAt, keySize, pointerAt, sizeAt, casAt) => {
    const entry = shared.get(text(keyAt, keySize));
    if (!entry) return NOT_FOUND;
    give(entry.value, pointerAt, sizeAt);
    view.setUint32(casAt, entry.cas, true);
    return OK;
  },
  proxy_set_shared_data: (keyAt, keySize, valueAt, valueSize, cas) => {
    const key = text(keyAt, keySize);
    const entry = shared.get(key);
    if (cas !== 0 && entry && entry.cas !== cas) return 8; // CAS mismatch
    memory();
    shared.set(key, { value: bytes.slice(valueAt, valueAt + valueSize), cas: ++casToken });
    return OK;
  },
  proxy_get_property: () => NOT_FOUND,
  proxy_set_property: () => OK,
  proxy_define_metric: (type, at, size, idAt) => {
    memory();
    view.setUint32(idAt, 1, true);
    return OK;
  },
  proxy_increment_metric: () => OK,
  proxy_record_metric: () => OK,
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_send_local_response: (status) => {
    throw new Error(`the module refused the request: ${status} (inputs from another run?)`);
  },
  proxy_set_buffer_bytes: () => OK,
};
const wasi = {
  random_get: (at, size) => {
    memory();
    crypto.randomFillSync(bytes.subarray(at, at + size));
    return OK;
  },
  environ_get: () => OK,
  environ_sizes_get: (countAt, sizeAt) => {
    memory();
    view.setUint32(countAt, 0, true);
    view.setUint32(sizeAt, 0, true);
    return OK;
  },
  proc_exit: (code) => {
    throw new Error(`the module exited with ${code}`);
  },
};
const compiled = new WebAssembly.Module(fs.readFileSync(modulePath));
for (const { module: from, name } of WebAssembly.Module.imports(compiled)) {
  if (from === 'env' && !(name in env)) env[name] = () => NOT_FOUND;
}
vm = new WebAssembly.Instance(compiled, { env, wasi_snapshot_preview1: wasi }).exports;
vm._initialize();
vm.proxy_on_context_create(1, 0);
vm.proxy_on_vm_start(1, 0);
if (!vm.proxy_on_configure(1, config.length)) throw new Error('the module refused its configuration');

let context = 2;
// One request as Envoy drives a filter: headers, the answer's headers and body, the end.
function request() {
  const id = context++;
  if (tokens) {
    if (id - 2 >= tokens.length) throw new Error('more requests than TOKENS has tokens');
    requestHeaders = requestHeadersWith(tokens[id - 2]);
  }
  vm.proxy_on_context_create(id, 1);
  if (stream) {
    vm.proxy_on_request_headers(id, 10, 0);
    body = requestBody;
    vm.proxy_on_request_body(id, body.length, 1);
    vm.proxy_on_response_headers(id, 4, 0);
    for (let i = 0; i < streamChunks.length; i++) {
      body = streamChunks[i];
      vm.proxy_on_response_body(id, body.length, i === streamChunks.length - 1 ? 1 : 0);
    }
  } else {
    vm.proxy_on_request_headers(id, 7, 1);
    vm.proxy_on_response_headers(id, 5, 0);
    vm.proxy_on_response_body(id, 2, 1);
  }
  vm.proxy_on_log(id);
  vm.proxy_on_done(id);
  vm.proxy_on_delete(id);
}
for (let i = 0; i < Number(process.env.WARM || 20000); i++) request();
const before = process.cpuUsage();
for (let i = 0; i < requests; i++) request();
const used = process.cpuUsage(before);
const micros = (used.user + used.system) / requests;
console.log(`${modulePath}: ${micros.toFixed(2)} µs of CPU a request` +
  (stream ? ` (${streamChunks.length} chunks: ${(micros / streamChunks.length).toFixed(3)} µs a chunk)` : ''));
