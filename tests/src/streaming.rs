//! Streaming throughput for `make bench`: an upstream that answers every request with the
//! same ~2 MB OpenAI chat-completions SSE stream, written in 1–4 KB chunks as a provider's
//! tokens arrive, and clients that read such streams through Envoy back to back, checking
//! each arrived whole. The mock providers (`mock_provider`) stream a few events; this one
//! streams enough for megabytes per second to mean something.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use crate::load::Connection;

/// The end of every stream, as OpenAI sends it.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// The length of `make bench`'s stream (and bench/wasm-host's).
pub const STREAM_BYTES: usize = 2 * 1024 * 1024;

/// An OpenAI chat-completions stream of at least `bytes`: a role delta, content deltas, a
/// `finish_reason`, a last chunk carrying `usage` (as `stream_options.include_usage` asks),
/// then `[DONE]`.
pub fn chat_completion_stream(bytes: usize) -> Vec<u8> {
    let chunk = |choices: &str, extra: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\
\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{choices}]{extra}}}\n\n"
        )
    };
    let mut stream = chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}"#,
        "",
    );
    let words = [
        "The",
        " gateway",
        " checks",
        " each",
        " token",
        " once",
        " and",
        " remembers",
        " it",
        ",",
        " then",
        " streams",
        " the",
        " answer",
        " through",
        ".",
    ];
    let mut completion_tokens = 0u64;
    while stream.len() < bytes {
        let word = words[completion_tokens as usize % words.len()];
        stream.push_str(&chunk(
            &format!(
                r#"{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}"#
            ),
            "",
        ));
        completion_tokens += 1;
    }
    stream.push_str(&chunk(
        r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#,
        "",
    ));
    stream.push_str(&chunk(
        "",
        &format!(
            r#","usage":{{"prompt_tokens":12,"completion_tokens":{completion_tokens},"total_tokens":{}}}"#,
            completion_tokens + 12
        ),
    ));
    let mut stream = stream.into_bytes();
    stream.extend_from_slice(DONE);
    stream
}

/// The stream cut into HTTP/1.1 chunks of 1–4 KB (sizes vary, as a provider's writes do),
/// each ready to be written with one call.
fn chunked_frames(body: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut seed = 0x2545_f491_u32;
    let mut rest = body;
    while !rest.is_empty() {
        // xorshift: sizes spread over 1024..=4096 without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let size = (1024 + seed as usize % 3073).min(rest.len());
        let (piece, after) = rest.split_at(size);
        let mut frame = format!("{size:x}\r\n").into_bytes();
        frame.extend_from_slice(piece);
        frame.extend_from_slice(b"\r\n");
        frames.push(frame);
        rest = after;
    }
    frames.push(b"0\r\n\r\n".to_vec());
    frames
}

/// An HTTP/1.1 upstream on a free loopback port that answers every request with the stream.
pub struct SseUpstream {
    pub addr: SocketAddr,
    /// The stream's length: what a client must receive.
    pub body_bytes: u64,
    stop: Arc<AtomicBool>,
}

impl SseUpstream {
    pub fn start(body: &[u8]) -> anyhow::Result<SseUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let frames = Arc::new(chunked_frames(body));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let frames = Arc::clone(&frames);
                std::thread::spawn(move || {
                    let _ = serve(stream, &frames);
                });
            }
        });
        Ok(SseUpstream {
            addr,
            body_bytes: body.len() as u64,
            stop,
        })
    }
}

impl Drop for SseUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers the requests of one keep-alive connection until it closes.
fn serve(stream: TcpStream, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut content_length = 0u64;
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse()?;
                }
            }
        }
        std::io::copy(
            &mut (&mut reader).take(content_length),
            &mut std::io::sink(),
        )?;
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        for frame in frames {
            writer.write_all(frame)?;
        }
    }
}

/// A streaming chat-completions request, raw HTTP/1.1. `x-tokenward-cluster` routes it when
/// no filter sets the header (tokenward removes the client's and sets its own). It asks for
/// the usage chunk as the SDKs let a client do: without it tokenward asks on the client's
/// behalf and takes that chunk out of the stream, which then arrives shorter than sent.
/// The length of the usage-only event of `chat_completion_stream`'s stream: what a client
/// that did not ask for the usage does not get.
pub fn usage_chunk_bytes(stream: &[u8]) -> anyhow::Result<u64> {
    let text = std::str::from_utf8(stream)?;
    let usage = text
        .find(r#""choices":[],"usage""#)
        .context("the stream has no usage-only chunk")?;
    let start = text[..usage].rfind("data: ").context("no event start")?;
    let end = usage + text[usage..].find("\n\n").context("no event end")? + 2;
    Ok((end - start) as u64)
}

/// `asks_usage`: the client sets `stream_options.include_usage`; without it tokenward asks
/// for the usage itself and takes the usage-only chunk out of what the client gets.
pub fn chat_stream_request(token: &str, asks_usage: bool) -> Vec<u8> {
    let body = if asks_usage {
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say something long."}]}"#
    } else {
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say something long."}]}"#
    };
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
content-type: application/json\r\nx-tokenward-cluster: openai\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What reading streams for a while gave.
#[derive(Debug)]
pub struct StreamThroughput {
    pub streams: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl StreamThroughput {
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads streams back to back over `connections` keep-alive connections for `duration`
/// (each stream started before the end is read to its end); every one must be a 200 of
/// exactly `body_bytes` ending with `[DONE]`.
pub fn read_streams(
    addr: SocketAddr,
    request: &[u8],
    body_bytes: u64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<StreamThroughput> {
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<(u64, u64)> {
                    let mut connection = Connection::open(addr)?;
                    let (mut streams, mut bytes) = (0, 0);
                    while start.elapsed() < duration {
                        let answer = connection.exchange(request)?;
                        if answer.status != 200 {
                            bail!("a stream was answered {}", answer.status);
                        }
                        ensure!(
                            answer.body_bytes == body_bytes && answer.tail.ends_with(DONE),
                            "a stream arrived incomplete: {} of {body_bytes} bytes, ending {:?}",
                            answer.body_bytes,
                            String::from_utf8_lossy(&answer.tail)
                        );
                        streams += 1;
                        bytes += answer.body_bytes;
                    }
                    Ok((streams, bytes))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a stream thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(StreamThroughput {
        streams: counts.iter().map(|(s, _)| s).sum(),
        bytes: counts.iter().map(|(_, b)| b).sum(),
        elapsed: start.elapsed(),
    })
}
