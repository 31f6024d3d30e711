//! The response side of a forwarded request: which provider API answered, metering its
//! usage as the body passes through, and the report the operator sees (Envoy stats and
//! access-log fields). Stat names are bounded: per provider and model, never per subject,
//! with at most `MAX_MODELS_IN_STATS` model names per worker.

use std::collections::HashSet;
use std::sync::Arc;

use crate::provider::{ApiFormat, Provider, UsageChunkStripper, UsageMeter};
use crate::quota::Price;
use crate::stat::{self, sanitize};
use crate::identity::{CredentialKind, Identity};
use crate::sync::UsageKey;
use crate::usage::Usage;

/// Distinct model names a worker puts into stat names; later ones count as `other`.
pub const MAX_MODELS_IN_STATS: usize = 64;

/// A forwarded request, followed through its response.
#[derive(Debug)]
pub struct Exchange {
    pub provider: Arc<Provider>,
    pub format: Option<ApiFormat>,
    pub model: Option<String>,
    /// The model's price, for the cost in the report.
    pub price: Option<Price>,
    pub subject: String,
    /// Who sent it and under which plan: the usage report's key.
    pub caller: Option<Arc<Identity>>,
    pub plan: Option<String>,
    meter: Option<UsageMeter>,
    /// The response could not be metered (compressed, or the format reports no usage).
    unreadable: bool,
    reported: bool,
    /// The filter asked the stream for the usage the client did not ask for: it takes the
    /// usage-only chunk out again.
    hide_usage_chunk: bool,
    stripper: Option<UsageChunkStripper>,
    /// What the client gets instead of the last body chunk, when that differs.
    replacement: Option<Vec<u8>>,
}

/// What one exchange tells the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub provider: String,
    pub model: Option<String>,
    pub subject: String,
    /// `None`: the response reported no usage (an error, an aborted stream, an unreadable body).
    pub usage: Option<Usage>,
    /// The usage's cost in micro-USD, when the model has a price.
    pub cost_micro_usd: Option<u64>,
}

impl Exchange {
    pub fn new(
        provider: Arc<Provider>,
        format: Option<ApiFormat>,
        model: Option<String>,
        subject: String,
    ) -> Self {
        Exchange {
            provider,
            format,
            model,
            price: None,
            subject,
            caller: None,
            plan: None,
            meter: None,
            unreadable: false,
            reported: false,
            hide_usage_chunk: false,
            stripper: None,
            replacement: None,
        }
    }

    /// The filter added `stream_options.include_usage` to the request: the client gets the
    /// stream without the usage-only chunk.
    pub fn hide_usage_chunk(&mut self) {
        self.hide_usage_chunk = true;
    }

    /// Whether the body the client gets may differ from the provider's.
    pub fn rewrites_body(&self) -> bool {
        self.stripper.is_some()
    }

    /// What the client gets instead of the body chunk just fed, if it differs.
    pub fn take_replacement(&mut self) -> Option<Vec<u8>> {
        self.replacement.take()
    }

    /// Response headers: streaming or not, and whether the body is readable at all.
    pub fn on_response_headers(
        &mut self,
        content_type: Option<&[u8]>,
        content_encoding: Option<&[u8]>,
    ) {
        let Some(format) = self.format else {
            return;
        };
        if content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case(b"identity")) {
            // The filter asks upstream for identity encoding; a provider that compresses
            // anyway cannot be metered here.
            self.unreadable = true;
            return;
        }
        let streaming = content_type.is_some_and(|t| t.starts_with(b"text/event-stream"));
        self.meter = Some(UsageMeter::new(format, streaming));
        if streaming && self.hide_usage_chunk && format == ApiFormat::OpenAiChat {
            self.stripper = Some(UsageChunkStripper::default());
        }
    }

    /// Whose usage this exchange is, for the usage reports.
    pub fn usage_key(&self) -> UsageKey {
        let caller = self.caller.as_deref();
        UsageKey {
            subject: self.subject.clone(),
            tenant: caller.and_then(|c| c.grants.tenant.clone()),
            plan: self.plan.clone(),
            credential: caller.and_then(|c| match c.kind() {
                CredentialKind::Jwt { jti, .. } => jti.map(|jti| jti.to_string()),
                CredentialKind::ApiKey { id } => Some(id.to_string()),
            }),
            provider: self.provider.name.clone(),
            model: self.model.clone(),
        }
    }

    pub fn wants_body(&self) -> bool {
        self.meter.is_some() && !self.reported
    }

    /// A piece of the response body; at the end of the stream, the report.
    pub fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<UsageReport> {
        if let Some(meter) = &mut self.meter {
            meter.feed(chunk);
        }
        if let Some(stripper) = &mut self.stripper {
            let out = stripper.feed(chunk, end_of_stream);
            if out != chunk {
                self.replacement = Some(out);
            }
        }
        end_of_stream.then(|| self.report()).flatten()
    }

    /// The stream is over (also when the client went away): the report, if not given yet.
    pub fn on_done(&mut self) -> Option<UsageReport> {
        self.report()
    }

    fn report(&mut self) -> Option<UsageReport> {
        if self.reported || self.format.is_none() {
            return None;
        }
        self.reported = true;
        let usage = if self.unreadable {
            None
        } else {
            self.meter.as_mut().and_then(UsageMeter::finish)
        };
        Some(UsageReport {
            provider: self.provider.name.clone(),
            model: self.model.clone(),
            subject: self.subject.clone(),
            usage,
            cost_micro_usd: usage
                .zip(self.price)
                .map(|(usage, price)| price.cost(&usage)),
        })
    }
}

/// Turns reports into stat names, keeping the set of model names bounded per worker.
#[derive(Debug, Default)]
pub struct UsageStats {
    models: HashSet<String>,
}

impl UsageStats {
    /// `(stat name, amount)` pairs to add for a report.
    pub fn counters(&mut self, report: &UsageReport) -> Vec<(String, u64)> {
        let model = self.model_label(report.model.as_deref());
        let prefix = stat::usage_prefix(&report.provider, &model);
        match report.usage {
            Some(usage) => vec![
                (format!("{prefix}.responses"), 1),
                (format!("{prefix}.input_tokens"), usage.input_tokens),
                (format!("{prefix}.output_tokens"), usage.output_tokens),
                (
                    format!("{prefix}.cached_input_tokens"),
                    usage.cached_input_tokens,
                ),
                (format!("{prefix}.total_tokens"), usage.total_tokens()),
            ]
            .into_iter()
            .chain(
                report
                    .cost_micro_usd
                    .map(|cost| (format!("{prefix}.cost_micro_usd"), cost)),
            )
            .collect(),
            None => vec![(format!("{prefix}.responses_without_usage"), 1)],
        }
    }

    fn model_label(&mut self, model: Option<&str>) -> String {
        let Some(model) = model else {
            return "unknown".to_string();
        };
        let label = sanitize(model);
        if self.models.contains(&label) {
            return label;
        }
        if self.models.len() >= MAX_MODELS_IN_STATS {
            return "other".to_string();
        }
        self.models.insert(label.clone());
        label
    }
}

#[cfg(test)]
mod tests;
