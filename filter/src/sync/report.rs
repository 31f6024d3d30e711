//! Usage reports: the driving worker takes the outbox into a report numbered per Envoy boot,
//! keeps it in shared data until the control plane has taken it, and sends the same report
//! again (same number) after any failure, so a report is never lost nor counted twice —
//! whichever worker drives the channel by then.

use super::ledger::{restore_outbox, take_outbox};
use super::{pulled, stat, Answer, RefusedConfig, ReportAnswer, SyncHost, SyncReport};
use crate::config::read::{self, Fields, Node, Read};
use crate::guard;
use crate::json::write::{self, object, ToJson};
use crate::quota::fleet::{self, CounterState};

const REPORT: &str = "tokenward.sync.report";

/// The sequence of this Envoy's reports, and the one not yet taken.
#[derive(Debug)]
struct Sequence {
    boot: String,
    /// The last number given to a report.
    seq: u64,
    /// The report with that number, until the control plane has taken it.
    pending: Option<String>,
}

impl ToJson for Sequence {
    fn write_json(&self, out: &mut String) {
        let Sequence { boot, seq, pending } = self;
        object(out, |sequence| {
            sequence
                .field("boot", boot)
                .field("seq", seq)
                .field("pending", pending);
        });
    }
}

impl Sequence {
    fn read(value: &Node) -> Read<Sequence> {
        let fields = Fields::open(value)?;
        Ok(Sequence {
            boot: fields.required("boot", read::string)?,
            seq: fields.required("seq", read::u64)?,
            pending: fields.optional("pending", read::string)?,
        })
    }
}

/// What the reporting worker says of its configuration.
pub(super) struct ConfigStatus {
    pub version: Option<String>,
    pub refused: Option<RefusedConfig>,
}

/// The report to send now, with its number: the one not taken yet, or a new one from the
/// outbox and the fleet counters (`None` when there is nothing to say and no heartbeat is
/// due).
pub(super) fn next(
    host: &dyn SyncHost,
    node: &str,
    pull: bool,
    now_ms: u64,
    heartbeat_due: bool,
    status: ConfigStatus,
    counters: Vec<CounterState>,
) -> Option<(u64, Vec<u8>)> {
    let store = host.store();
    let (sequence, cas) = match store.get(REPORT) {
        Ok(Some((bytes, cas))) => match read::from_json(&bytes, Sequence::read) {
            Ok(sequence) => (sequence, Some(cas)),
            Err(_) => (fresh(now_ms), Some(cas)),
        },
        Ok(None) => (fresh(now_ms), None),
        Err(error) => {
            log::warn!("the report sequence is unreadable: {error}");
            return None;
        }
    };
    if let Some(body) = sequence.pending {
        return Some((sequence.seq, body.into_bytes()));
    }
    let entries = match take_outbox(store) {
        Ok(entries) => entries,
        Err(error) => {
            log::warn!("the usage outbox could not be taken: {error}");
            return None;
        }
    };
    let blocks = match guard::take_events(store) {
        Ok(blocks) => blocks,
        Err(error) => {
            log::warn!("the guard's blocks could not be taken for the report: {error}");
            Vec::new()
        }
    };
    // Fleet counters go every interval while they are in use: that is how allowances follow
    // demand, and how an idle Envoy's shrink.
    if entries.is_empty() && counters.is_empty() && blocks.is_empty() && !heartbeat_due {
        return None;
    }
    let seq = sequence.seq + 1;
    let report = SyncReport {
        node: node.to_string(),
        boot: sequence.boot.clone(),
        seq,
        pull,
        config_version: status.version,
        refused: status.refused,
        entries,
        counters,
        blocks,
    };
    let body = write::to_string(&report);
    let kept = Sequence {
        boot: sequence.boot,
        seq,
        pending: Some(body.clone()),
    };
    let written = store.compare_and_set(REPORT, &write::to_vec(&kept), cas);
    if !matches!(written, Ok(true)) {
        // Another worker numbered a report meanwhile: the usage goes back for the next one.
        if let Err(error) = restore_outbox(store, report.entries) {
            log::error!("usage could not be put back into the outbox: {error}");
        }
        if let Err(error) = guard::restore_events(store, report.blocks) {
            log::error!("blocks could not be put back for the next report: {error}");
        }
        return None;
    }
    Some((seq, body.into_bytes()))
}

/// The control plane's answer to report `seq`.
pub(super) fn on_answer(host: &dyn SyncHost, seq: u64, answer: &Answer, now_ms: u64) {
    match answer.status {
        Some(200..=299) => {
            host.count(stat::REPORTS_SENT, 1);
            clear(host, seq);
            pulled::touch_contact(host.store(), now_ms);
            // An answer without allowances (an older control plane) leaves those in force.
            match read::from_json(&answer.body, ReportAnswer::read) {
                Ok(ReportAnswer {
                    allowances: Some(allowances),
                    ..
                }) => {
                    if let Err(error) = fleet::publish(host.store(), allowances, now_ms) {
                        log::warn!("fleet allowances could not be shared: {error}");
                    }
                }
                Ok(_) => {}
                Err(error) => log::warn!("the answer to usage report {seq} is unreadable: {error}"),
            }
        }
        Some(status @ (400 | 413 | 422)) => {
            // Malformed for the control plane: sending it again would block every later one.
            log::error!("the control plane refused usage report {seq} ({status}); dropped");
            host.count(stat::REPORTS_DROPPED, 1);
            clear(host, seq);
        }
        status => {
            log::warn!(
                "usage report {seq} was not taken ({}); it is sent again",
                super::answer_status(status)
            );
            host.count(stat::CALL_ERRORS, 1);
        }
    }
}

/// The report `seq` was taken: the next one may be numbered.
fn clear(host: &dyn SyncHost, seq: u64) {
    let store = host.store();
    for _ in 0..crate::quota::counter::MAX_CAS_ATTEMPTS {
        let Ok(Some((bytes, cas))) = store.get(REPORT) else {
            return;
        };
        let Ok(mut sequence) = read::from_json(&bytes, Sequence::read) else {
            return;
        };
        if sequence.seq != seq || sequence.pending.is_none() {
            return;
        }
        sequence.pending = None;
        if store
            .compare_and_set(REPORT, &write::to_vec(&sequence), Some(cas))
            .unwrap_or(false)
        {
            return;
        }
    }
}

/// A new sequence: the Envoy process's first report. Its start time and a random part tell
/// it from the sequences of other processes on the same node id (or of Envoys that set
/// none, and all report as "unnamed").
fn fresh(now_ms: u64) -> Sequence {
    use std::hash::{BuildHasher, Hasher};
    // The host's randomness, as every HashMap of the filter already draws it.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Sequence {
        boot: format!("{now_ms}-{random:016x}"),
        seq: 0,
        pending: None,
    }
}
