//! The providers: everything that differs by provider style lives here, one file per API
//! family (`openai`, `anthropic`, `gemini`): the credential header and its form, which API a
//! path speaks (`api_format`), what its request body carries (`body_shape`), and where its
//! answers report usage (read by `meter`). This file dispatches by style and compiles a
//! provider's configuration; a new family is a new file and an arm in each `match` here.

mod anthropic;
mod gemini;
mod meter;
mod openai;
mod search;
mod stream;

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{CredentialSource, ProviderConfig, ProviderStyle};
use crate::error::ErrorStyle;
use crate::invalid::InvalidConfig;
use crate::json::raw::Raw;
use crate::usage::Usage;

pub use meter::UsageMeter;
pub(crate) use search::may_carry_usage;
pub use stream::UsageChunkStripper;

/// The header Envoy's route table reads to pick the provider's cluster.
pub const CLUSTER_HEADER: &str = "x-tokenward-cluster";
pub use anthropic::DEFAULT_VERSION as DEFAULT_ANTHROPIC_VERSION;

/// Which provider API a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFormat {
    /// OpenAI chat completions and embeddings (and OpenAI-compatible APIs).
    OpenAiChat,
    /// OpenAI responses API.
    OpenAiResponses,
    /// Anthropic messages.
    Anthropic,
    /// Gemini generateContent / streamGenerateContent.
    Gemini,
}

/// A provider, ready to be the target of a request.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub style: ProviderStyle,
    /// Headers set on every forwarded request: the credential in the provider's style,
    /// `:authority`, the cluster-selection header and the configured extras.
    pub upstream_headers: Arc<[(String, Vec<u8>)]>,
    /// Whether `anthropic-version` must be added when the client sent none.
    pub needs_default_anthropic_version: bool,
    /// The provider could not be loaded (its credential is missing, say): requests for it
    /// are refused with 503 `provider_unavailable`.
    pub unavailable: bool,
}

impl Provider {
    /// A provider that could not be loaded: no request reaches it.
    pub(crate) fn unavailable(name: &str, style: ProviderStyle) -> Provider {
        Provider {
            name: name.to_string(),
            style,
            upstream_headers: Arc::new([]),
            needs_default_anthropic_version: false,
            unavailable: true,
        }
    }

    /// Compiles the `index`th provider entry; `env` reads credentials named by variable.
    pub(crate) fn compile(
        index: usize,
        p: &ProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Provider, InvalidConfig> {
        if p.cluster.is_empty() || p.authority.is_empty() {
            return Err(InvalidConfig::ProviderFields(index));
        }
        let secret = match &p.credential {
            CredentialSource::Inline(value) => value.clone(),
            CredentialSource::Env(var) => {
                env(var).ok_or_else(|| InvalidConfig::MissingEnvCredential {
                    index,
                    var: var.clone(),
                })?
            }
        };
        let secret = secret.trim().to_string();
        if secret.is_empty() || !is_header_value(&secret) {
            return Err(InvalidConfig::BadCredential(index));
        }
        let (credential_header, credential_value) = credential_header(p.style, secret);
        let mut upstream_headers = vec![
            (credential_header.to_string(), credential_value.into_bytes()),
            (":authority".to_string(), p.authority.clone().into_bytes()),
            (CLUSTER_HEADER.to_string(), p.cluster.clone().into_bytes()),
        ];
        for (name, value) in &p.headers {
            let name = name.to_ascii_lowercase();
            if !is_settable_header_name(&name) || !is_header_value(value) {
                return Err(InvalidConfig::BadProviderHeader { index, name });
            }
            upstream_headers.push((name, value.clone().into_bytes()));
        }
        let needs_default_anthropic_version = p.style == ProviderStyle::Anthropic
            && !upstream_headers
                .iter()
                .any(|(n, _)| n == "anthropic-version");
        Ok(Provider {
            name: p.name.clone(),
            style: p.style,
            upstream_headers: upstream_headers.into(),
            needs_default_anthropic_version,
            unavailable: false,
        })
    }
}

/// The header that carries a provider's credential, and its value, by style.
fn credential_header(style: ProviderStyle, secret: String) -> (&'static str, String) {
    match style {
        ProviderStyle::Openai => openai::credential(secret, false),
        ProviderStyle::AzureOpenai => openai::credential(secret, true),
        ProviderStyle::Anthropic => anthropic::credential(secret),
        ProviderStyle::Gemini => gemini::credential(secret),
    }
}

/// The error shape the SDKs of a style expect.
pub fn error_style(style: ProviderStyle) -> ErrorStyle {
    match style {
        ProviderStyle::Openai | ProviderStyle::AzureOpenai => ErrorStyle::OpenAi,
        ProviderStyle::Anthropic => ErrorStyle::Anthropic,
        ProviderStyle::Gemini => ErrorStyle::Google,
    }
}

/// Which provider API a forwarded request speaks, from the provider's style and the path;
/// `None` for endpoints that report no usage (model lists and the like).
pub fn api_format(style: ProviderStyle, path: &str) -> Option<ApiFormat> {
    let path = path.split('?').next().unwrap_or(path);
    match style {
        ProviderStyle::Openai | ProviderStyle::AzureOpenai => openai::api_format(path),
        ProviderStyle::Anthropic => anthropic::api_format(path),
        ProviderStyle::Gemini => gemini::api_format(path),
    }
}

/// What a metered request body carries, by API: whether the answer has output tokens,
/// which fields limit them (read in the body; `clamp_max_tokens` writes those present, or
/// the first when none is), and whether a stream reports usage only when asked
/// (`stream_options.include_usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyShape {
    pub produces_output: bool,
    pub limit_fields: &'static [&'static str],
    pub usage_is_opt_in: bool,
}

pub fn body_shape(format: ApiFormat, path: &str) -> BodyShape {
    let path = path.split('?').next().unwrap_or(path);
    match format {
        ApiFormat::OpenAiChat | ApiFormat::OpenAiResponses => openai::body_shape(format, path),
        ApiFormat::Anthropic => anthropic::body_shape(),
        ApiFormat::Gemini => gemini::body_shape(),
    }
}

/// The members of a stream event that can carry usage, in every provider's format. The rest
/// (the generated text, the choices) is validated while walking past it, never built.
#[derive(Debug, Default)]
struct EventEnvelope<'a> {
    /// Anthropic's and OpenAI Responses' event type.
    kind: Option<Cow<'a, str>>,
    usage: Raw<'a>,
    /// Gemini's.
    usage_metadata: Raw<'a>,
    /// Anthropic's `message_start` carries the message, with its usage.
    message: Raw<'a>,
    /// OpenAI Responses' `response.completed` carries the response, with its usage.
    response: Raw<'a>,
    /// OpenAI chat's choices, unread.
    choices: Raw<'a>,
}

impl<'a> EventEnvelope<'a> {
    /// The event's data, if it is a JSON object that can carry usage (`may_carry_usage`).
    fn parse(data: &'a [u8]) -> Option<EventEnvelope<'a>> {
        if !may_carry_usage(data) {
            return None;
        }
        EventEnvelope::read(data)
    }

    /// The event's data, if it is a JSON object.
    fn read(data: &'a [u8]) -> Option<EventEnvelope<'a>> {
        let [kind, usage, usage_metadata, message, response, choices] = envelope(
            data,
            ["type", "usage", "usageMetadata", "message", "response", "choices"],
        )?;
        // The type is a string or nothing: any other value made the event unreadable.
        let kind = match kind.is_null() {
            true => None,
            false => Some(kind.as_str()?),
        };
        Some(EventEnvelope {
            kind,
            usage,
            usage_metadata,
            message,
            response,
            choices,
        })
    }

    fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
}

/// The members named `fields` of the JSON object `bytes`, as serde's derive read such an
/// envelope: the other members are validated and skipped, and a field named twice, or text
/// that is not one valid JSON object, makes the whole envelope unreadable (`None`).
fn envelope<'a, const N: usize>(bytes: &'a [u8], fields: [&str; N]) -> Option<[Raw<'a>; N]> {
    let mut found = [Raw::default(); N];
    let mut repeated = false;
    Raw::members(bytes, |key, value| {
        if let Some(slot) = fields.iter().position(|f| key.is(f)) {
            repeated |= !found[slot].is_absent();
            found[slot] = value;
        }
    })
    .ok()?;
    (!repeated).then_some(found)
}

/// The usage a stream event reports, folded into what the events before it reported.
fn event_usage(format: ApiFormat, data: &[u8], usage: &mut Option<Usage>) {
    let Some(event) = EventEnvelope::parse(data) else {
        return;
    };
    match format {
        ApiFormat::OpenAiChat | ApiFormat::OpenAiResponses => {
            openai::event_usage(format, &event, usage)
        }
        ApiFormat::Anthropic => anthropic::event_usage(&event, usage),
        ApiFormat::Gemini => gemini::event_usage(&event, usage),
    }
}

/// The usage a whole JSON answer reports, from its `usage` or (Gemini) `usageMetadata`.
fn json_usage(format: ApiFormat, usage: Raw<'_>, usage_metadata: Raw<'_>) -> Option<Usage> {
    match format {
        ApiFormat::OpenAiChat | ApiFormat::OpenAiResponses => openai::json_usage(format, usage),
        ApiFormat::Anthropic => anthropic::json_usage(usage),
        ApiFormat::Gemini => gemini::json_usage(usage_metadata),
    }
}

/// A count in a usage object; absent or not a number counts as 0.
fn count(value: Raw<'_>) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Visible ASCII and spaces only: what every proxy forwards unchanged.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// A lowercase token that is not a pseudo-header, a credential header the filter manages, or
/// one of its own.
fn is_settable_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !crate::credential::CREDENTIAL_HEADERS.contains(&name)
        && !name.starts_with(crate::credential::INTERNAL_HEADER_PREFIX)
        && name != "host"
}
