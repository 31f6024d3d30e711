//! The request body of a route that reads it: the model it names (authorized and priced),
//! the quota admission with the output limit clamped to what the plan allows, and the body
//! rewrite that asks a stream for its usage.

use super::head::{authorize_model, output_reserve};
use super::{refund, AwaitingBody, Forwarded, Phase, Seen, Worker};
use crate::decision::Decision;
use crate::error::{ErrorCode, Refusal};
use crate::host::Host;
use crate::model::{self, BodyEdit, ModelError};
use crate::quota::{self, Demand};

/// Decides on the whole buffered body (`body_size` bytes); the phase the request moves to.
pub(super) fn decide(
    worker: &Worker,
    host: &impl Host,
    body_size: usize,
    awaiting: AwaitingBody,
    events: &mut Vec<String>,
    seen: &mut Seen,
) -> Result<(Decision, Phase), Refusal> {
    let AwaitingBody {
        identity,
        plan,
        shape,
        mut exchange,
        ..
    } = awaiting;
    let body = host.request_body(body_size).ok_or_else(|| {
        Refusal::new(
            ErrorCode::InternalError,
            "the request body could not be read",
        )
    })?;
    let mut fields = model::read_body(&body).map_err(|e| match e {
        ModelError::InvalidJson(reason) => Refusal::new(
            ErrorCode::InvalidJson,
            format!("the request body is not valid JSON: {reason}"),
        ),
        ModelError::Missing => Refusal::new(
            ErrorCode::MissingModel,
            "the request body has no \"model\" string",
        ),
    })?;
    // Kept once, in `seen`: the exchange takes it when the request goes on (`enter`).
    let model = seen.model.insert(std::mem::take(&mut fields.model));
    authorize_model(&identity, model)?;
    let price = worker.policy().and_then(|p| p.quotas.price_for(model));
    exchange.price = price;
    let mut edit = BodyEdit::default();
    let mut grant = None;
    if let (Some(plan), Some(now)) = (&plan, host.now_unix_seconds()) {
        let demand = match shape {
            // An endpoint that reports no usage reserves no tokens: nothing would settle them.
            None => Demand::default(),
            Some(shape) => {
                let requested = fields.output_limit(shape.limit_fields).map_err(|field| {
                    Refusal::new(
                        ErrorCode::InvalidJson,
                        format!("\"{field}\" must be a number of tokens"),
                    )
                })?;
                let output = output_reserve(plan, shape, requested);
                let mut demand = Demand::estimate(body_size as u64, output, price);
                let sets = |field: &str| fields.output_limits.iter().any(|(n, _)| *n == field);
                edit.output_limit = quota::clamp_output(
                    plan,
                    &identity,
                    &mut demand,
                    shape.limit_fields,
                    &sets,
                    requested,
                    host.store(),
                    worker.fleet(),
                    now,
                );
                demand
            }
        };
        grant = Some(quota::admit_counted(
            plan,
            &identity,
            &demand,
            host.store(),
            worker.fleet(),
            now,
            events,
        )?);
    }
    // A stream that reports usage only when asked is asked, so it can be counted.
    edit.include_usage =
        fields.stream && !fields.include_usage && shape.is_some_and(|s| s.usage_is_opt_in);
    if edit.include_usage {
        exchange.hide_usage_chunk();
    }
    if edit.is_empty() {
        return Ok((
            Decision::Continue,
            Phase::Forwarded(Forwarded::new(exchange, grant)),
        ));
    }
    match edit.apply(&body) {
        Ok(body) => Ok((
            Decision::ReplaceBody(body),
            Phase::Forwarded(Forwarded::new(exchange, grant)),
        )),
        // `read_body` accepted this body, so this should not happen; should it, the body is
        // what could not be handled: a 400 with the reason, never a 5xx.
        Err(e) => {
            refund(grant, host, events);
            let reason = match e {
                ModelError::InvalidJson(reason) => reason,
                ModelError::Missing => "it is not a JSON object".to_string(),
            };
            Err(Refusal::new(
                ErrorCode::InvalidJson,
                format!("the request body could not be rewritten: {reason}"),
            ))
        }
    }
}
