use super::*;
use crate::config::ProviderStyle;
use crate::provider::api_format;

fn provider(name: &str, style: ProviderStyle) -> std::sync::Arc<Provider> {
    std::sync::Arc::new(Provider {
        name: name.into(),
        style,
        upstream_headers: std::sync::Arc::from(Vec::new()),
        needs_default_anthropic_version: false,
        unavailable: false,
    })
}

#[test]
fn formats_follow_style_and_path() {
    use ProviderStyle::*;
    assert_eq!(
        api_format(Openai, "/v1/chat/completions"),
        Some(ApiFormat::OpenAiChat)
    );
    assert_eq!(
        api_format(Openai, "/v1/embeddings"),
        Some(ApiFormat::OpenAiChat)
    );
    assert_eq!(
        api_format(
            AzureOpenai,
            "/openai/deployments/d/chat/completions?api-version=1"
        ),
        Some(ApiFormat::OpenAiChat)
    );
    assert_eq!(
        api_format(Openai, "/v1/responses"),
        Some(ApiFormat::OpenAiResponses)
    );
    assert_eq!(api_format(Openai, "/v1/models"), None);
    assert_eq!(
        api_format(Anthropic, "/v1/messages"),
        Some(ApiFormat::Anthropic)
    );
    assert_eq!(api_format(Anthropic, "/v1/models"), None);
    assert_eq!(
        api_format(Gemini, "/v1beta/models/g:streamGenerateContent?alt=sse"),
        Some(ApiFormat::Gemini)
    );
    assert_eq!(api_format(Gemini, "/v1beta/models"), None);
}

#[test]
fn a_streamed_response_is_metered_across_chunks_and_reported_once() {
    let mut exchange = Exchange::new(
        provider("anthropic", ProviderStyle::Anthropic),
        Some(ApiFormat::Anthropic),
        Some("claude".into()),
        "alice".into(),
    );
    exchange.on_response_headers(Some(b"text/event-stream"), None);
    let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n";
    let (a, b) = stream.split_at(50);
    assert_eq!(exchange.on_response_body(a, false), None);
    let report = exchange.on_response_body(b, true).unwrap();
    assert_eq!(
        report.usage,
        Some(Usage {
            input_tokens: 9,
            output_tokens: 4,
            cached_input_tokens: 0
        })
    );
    assert_eq!(
        (report.provider.as_str(), report.subject.as_str()),
        ("anthropic", "alice")
    );
    assert_eq!(exchange.on_done(), None, "reported once");
}

#[test]
fn an_aborted_stream_reports_what_it_saw_when_done() {
    let mut exchange = Exchange::new(
        provider("openai", ProviderStyle::Openai),
        Some(ApiFormat::OpenAiChat),
        None,
        "bob".into(),
    );
    exchange.on_response_headers(Some(b"text/event-stream"), None);
    assert_eq!(
        exchange.on_response_body(b"data: {\"choices\":[]}\n\n", false),
        None
    );
    assert_eq!(exchange.on_done().unwrap().usage, None);
}

#[test]
fn a_compressed_response_is_reported_without_usage() {
    let mut exchange = Exchange::new(
        provider("openai", ProviderStyle::Openai),
        Some(ApiFormat::OpenAiChat),
        None,
        "bob".into(),
    );
    exchange.on_response_headers(Some(b"application/json"), Some(b"gzip"));
    assert!(!exchange.wants_body());
    assert_eq!(exchange.on_done().unwrap().usage, None);
}

#[test]
fn endpoints_without_usage_report_nothing() {
    let mut exchange = Exchange::new(
        provider("openai", ProviderStyle::Openai),
        None,
        None,
        "bob".into(),
    );
    exchange.on_response_headers(Some(b"application/json"), None);
    assert!(!exchange.wants_body());
    assert_eq!(exchange.on_done(), None);
}

#[test]
fn stat_names_are_sanitized_and_bounded() {
    let mut stats = UsageStats::default();
    let report = |model: &str| UsageReport {
        provider: "openai".into(),
        model: Some(model.into()),
        subject: "alice".into(),
        usage: Some(Usage {
            input_tokens: 3,
            output_tokens: 4,
            cached_input_tokens: 1,
        }),
        cost_micro_usd: Some(12),
    };
    let counters = stats.counters(&report("gpt-4o.mini/2024"));
    assert!(counters.contains(&(
        "tokenward.usage.openai.gpt-4o_mini_2024.total_tokens".to_string(),
        7
    )));
    assert!(counters.contains(&(
        "tokenward.usage.openai.gpt-4o_mini_2024.cost_micro_usd".to_string(),
        12
    )));
    assert!(
        counters.iter().all(|(name, _)| !name.contains("alice")),
        "never per subject"
    );
    for i in 0..MAX_MODELS_IN_STATS + 10 {
        stats.counters(&report(&format!("m{i}")));
    }
    let overflow = stats.counters(&report("brand-new"));
    assert!(overflow[0].0.starts_with("tokenward.usage.openai.other."));
    let known = stats.counters(&report("gpt-4o.mini/2024"));
    assert!(
        known[0].0.contains("gpt-4o_mini_2024"),
        "known models keep their name"
    );
}
