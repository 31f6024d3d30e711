//! A stand-in for the AI providers, the one component the tests may fake: it answers in the
//! providers' real wire formats (OpenAI chat/embeddings/models, Anthropic messages, Gemini
//! generateContent; JSON, and SSE when the request asks to stream) with real `usage`
//! fields, and records every request it receives so tests can assert the credential that
//! arrived and that the client's never did.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The usage the mock reported in its answer (input, output tokens), if it reported any.
    pub reported_usage: Option<(u64, u64)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Does any header value or the path contain `needle`?
    pub fn contains(&self, needle: &str) -> bool {
        self.path.contains(needle)
            || self
                .headers
                .iter()
                .any(|(_, v)| String::from_utf8_lossy(v).contains(needle))
    }
}

/// Usage the mock reports: prompt tokens grow with the request body, output is fixed.
pub const COMPLETION_TOKENS: u64 = 7;

pub fn prompt_tokens(body: &[u8]) -> u64 {
    (body.len() as u64 / 4).max(1)
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("cannot start the mock providers' runtime: {e}");
                std::process::exit(2)
            })
    })
}

pub struct MockProvider {
    pub name: String,
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Shared {
    records: Arc<Mutex<Vec<Recorded>>>,
}

impl MockProvider {
    /// Starts a provider on a free loopback port.
    pub fn start(name: &str) -> anyhow::Result<MockProvider> {
        MockProvider::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a provider on `addr` (the bundled docker setup uses fixed ports).
    pub fn start_on(name: &str, addr: SocketAddr) -> anyhow::Result<MockProvider> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            records: Arc::clone(&records),
        };
        let listener = runtime().block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new().fallback(handle).with_state(shared);
        runtime().spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(MockProvider {
            name: name.to_string(),
            addr,
            records,
            shutdown: Some(tx),
        })
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut r) = self.records.lock() {
            r.clear();
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let input = prompt_tokens(&body);
    let path = uri.path();
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reported_usage = match path {
        "/v1/chat/completions" if streaming && !include_usage => None,
        "/v1/chat/completions" | "/v1/messages" | "/v1/responses" => {
            Some((input, COMPLETION_TOKENS))
        }
        "/v1/embeddings" => Some((input, 0)),
        p if gemini_call(p).is_some_and(|(_, method)| method.ends_with("enerateContent")) => {
            Some((input, COMPLETION_TOKENS))
        }
        _ => None,
    };
    let recorded = Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
        reported_usage,
    };
    if let Ok(mut r) = shared.records.lock() {
        r.push(recorded);
    }
    if path == "/v1/chat/completions" {
        if streaming {
            return sse(openai_chat_stream(&model, input, include_usage));
        }
        // OpenAI reports its own rate limits (of the provider key) on every answer.
        let mut response = json_response(openai_chat(&model, input));
        for (name, value) in [
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-ratelimit-reset-requests", "6ms"),
        ] {
            response
                .headers_mut()
                .insert(name, value.parse().expect("static header"));
        }
        return response;
    }
    if path == "/v1/responses" {
        return json_response(openai_response(&model, input));
    }
    if path == "/v1/messages/count_tokens" {
        return json_response(json!({"input_tokens": input}));
    }
    if path == "/v1/embeddings" {
        return json_response(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0091, 0.0154]}],
            "model": model,
            "usage": {"prompt_tokens": input, "total_tokens": input}
        }));
    }
    // Each provider's own listing, told apart as its SDK is: Anthropic's sends its version.
    if path == "/v1/models" && headers.contains_key("anthropic-version") {
        return json_response(json!({
            "data": [{"type": "model", "id": "claude-3-5-haiku-latest", "display_name": "Claude Haiku 3.5", "created_at": "2024-10-22T00:00:00Z"}],
            "has_more": false,
            "first_id": "claude-3-5-haiku-latest",
            "last_id": "claude-3-5-haiku-latest"
        }));
    }
    if (path == "/v1/models" && headers.contains_key("x-goog-api-key")) || path == "/v1beta/models"
    {
        return json_response(json!({
            "models": [{"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash", "supportedGenerationMethods": ["generateContent", "countTokens"]}]
        }));
    }
    if path == "/v1/models" {
        return json_response(json!({
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}]
        }));
    }
    if path == "/v1/messages" {
        if streaming {
            return sse(anthropic_stream(&model, input));
        }
        return json_response(anthropic_message(&model, input));
    }
    if let Some((model, method)) = gemini_call(path) {
        match method {
            "generateContent" => return json_response(gemini_response(model, input)),
            "streamGenerateContent" => return sse(gemini_stream(model, input)),
            "countTokens" => return json_response(json!({"totalTokens": input})),
            "embedContent" => {
                return json_response(json!({"embedding": {"values": [0.0023, -0.0091, 0.0154]}}))
            }
            // One embedding per request of the batch, in order, as Gemini answers.
            "batchEmbedContents" => {
                let count = request
                    .get("requests")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let embeddings = vec![json!({"values": [0.0023, -0.0091, 0.0154]}); count];
                return json_response(json!({ "embeddings": embeddings }));
            }
            _ => {}
        }
    }
    let mut response = Response::new(Body::from(
        json!({"error": {"message": format!("mock provider: no such endpoint {path}"), "type": "invalid_request_error", "code": "not_found"}}).to_string(),
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

fn json_response(value: Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    response
}

fn sse(events: String) -> Response {
    let mut response = Response::new(Body::from(events));
    response.headers_mut().insert(
        "content-type",
        "text/event-stream".parse().expect("static header"),
    );
    response
}

const REPLY: [&str; 3] = ["Hello", " from the", " mock provider"];

/// The Responses API's answer, with its usage as OpenAI reports it.
fn openai_response(model: &str, input: u64) -> Value {
    json!({
        "id": "resp_mock",
        "object": "response",
        "created_at": 1732870000,
        "model": model,
        "status": "completed",
        "output": [{
            "type": "message",
            "id": "msg_mock",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": REPLY.concat(), "annotations": []}]
        }],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": COMPLETION_TOKENS,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + COMPLETION_TOKENS
        }
    })
}

fn openai_chat(model: &str, input: u64) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1732870000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": REPLY.concat(), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": input,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": input + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        },
        "system_fingerprint": "fp_mock"
    })
}

fn openai_chat_stream(model: &str, input: u64, include_usage: bool) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1732870000, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null
        })
    };
    let mut out = format!(
        "data: {}\n\n",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    );
    for piece in REPLY {
        out.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({"content": piece}), Value::Null)
        ));
    }
    out.push_str(&format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
    if include_usage {
        let usage = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1732870000, "model": model,
            "choices": [],
            "usage": {"prompt_tokens": input, "completion_tokens": COMPLETION_TOKENS, "total_tokens": input + COMPLETION_TOKENS}
        });
        out.push_str(&format!("data: {usage}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_message(model: &str, input: u64) -> Value {
    json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY.concat()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": input,
            "output_tokens": COMPLETION_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0
        }
    })
}

fn anthropic_stream(model: &str, input: u64) -> String {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        }}),
    );
    out.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    out.push_str(&event("ping", json!({"type": "ping"})));
    for piece in REPLY {
        out.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push_str(&event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push_str(&event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": COMPLETION_TOKENS}}),
    ));
    out.push_str(&event("message_stop", json!({"type": "message_stop"})));
    out
}

fn gemini_response(model: &str, input: u64) -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": REPLY.concat()}], "role": "model"},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {
            "promptTokenCount": input,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": input + COMPLETION_TOKENS
        },
        "modelVersion": model
    })
}

fn gemini_stream(model: &str, input: u64) -> String {
    // Gemini's SSE separates events with CRLF pairs; usage grows with each chunk.
    let mut out = String::new();
    for (i, piece) in REPLY.iter().enumerate() {
        let output = if i + 1 == REPLY.len() {
            COMPLETION_TOKENS
        } else {
            i as u64 + 1
        };
        let mut candidate =
            json!({"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0});
        if i + 1 == REPLY.len() {
            candidate["finishReason"] = json!("STOP");
        }
        let chunk = json!({
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output},
            "modelVersion": model
        });
        out.push_str(&format!("data: {chunk}\r\n\r\n"));
    }
    out
}

/// A Gemini call, under /v1beta or /v1: the model and the method after the colon.
fn gemini_call(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    Some(rest.split_once(':').unwrap_or((rest, "")))
}
