//! Response usage: `UsageMeter` over a JSON answer or an SSE stream. The first byte chooses
//! the provider format (bits 0-1) and streaming (bit 2); then `seed \n body`: the body is
//! fed whole, one byte at a time, and in chunks whose sizes come from the seed. Properties:
//! nothing panics, and where the stream is cut never changes the usage it reports (the
//! filter sees whatever chunk boundaries Envoy hands it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_filter::provider::{ApiFormat, UsageMeter};
use tokenward_filter::usage::Usage;
use tokenward_fuzz::choices::chunks;

const FORMATS: [ApiFormat; 4] = [
    ApiFormat::OpenAiChat,
    ApiFormat::OpenAiResponses,
    ApiFormat::Anthropic,
    ApiFormat::Gemini,
];

fn meter<'a>(
    format: ApiFormat,
    streaming: bool,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Option<Usage> {
    let mut meter = UsageMeter::new(format, streaming);
    for piece in pieces {
        meter.feed(piece);
    }
    let usage = meter.finish();
    // Finishing twice (a stream end after a trailer callback) reports the same.
    assert_eq!(meter.finish(), usage, "finish is not idempotent");
    usage
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(mode & 3)];
    let streaming = mode & 4 != 0;
    let (seed, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let whole = meter(format, streaming, std::iter::once(body));
    let bytewise = meter(format, streaming, body.chunks(1));
    assert_eq!(whole, bytewise, "byte-at-a-time feeding changed the usage");
    let cut = chunks(body, seed);
    let chunked = meter(format, streaming, cut.into_iter().map(|r| &body[r]));
    assert_eq!(whole, chunked, "chunk boundaries changed the usage");
    if let Some(usage) = whole {
        assert!(
            usage.total_tokens() >= usage.input_tokens,
            "total below input"
        );
    }
});
