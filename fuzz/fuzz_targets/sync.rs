//! What the sync channel reads: a plugin configuration that may be a bootstrap, the usage
//! reports the control plane takes, and its answers with fleet allowances (and the counter
//! keys in them). Properties: nothing panics; a document is a bootstrap or a whole
//! configuration, never both; a report or an answer that parses survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_filter::config::Bootstrap;
use tokenward_filter::sync::{key_parts, PluginConfig, ReportAnswer, SyncReport};

fn env(name: &str) -> Option<String> {
    name.starts_with("SET_").then(|| "twp_fuzz".to_string())
}

fuzz_target!(|data: &[u8]| {
    let loaded = PluginConfig::load(data, &env);
    if let Ok(PluginConfig::Full(_)) = loaded {
        assert!(
            serde_json::from_slice::<Bootstrap>(data).is_err(),
            "a bootstrap loaded as a whole configuration"
        );
    }
    if let Ok(report) = serde_json::from_slice::<SyncReport>(data) {
        let written = match serde_json::to_vec(&report) {
            Ok(written) => written,
            Err(e) => panic!("a parsed report does not serialize: {e}"),
        };
        match serde_json::from_slice::<SyncReport>(&written) {
            Ok(again) => assert_eq!(again, report, "report round trip"),
            Err(e) => panic!("a written report does not parse: {e}"),
        }
    }
    if let Ok(answer) = serde_json::from_slice::<ReportAnswer>(data) {
        let written = match serde_json::to_vec(&answer) {
            Ok(written) => written,
            Err(e) => panic!("a parsed answer does not serialize: {e}"),
        };
        match serde_json::from_slice::<ReportAnswer>(&written) {
            Ok(again) => assert_eq!(again, answer, "answer round trip"),
            Err(e) => panic!("a written answer does not parse: {e}"),
        }
        for grant in answer.allowances.iter().flat_map(|a| &a.grants) {
            let _ = key_parts(&grant.key);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(parts) = key_parts(text) {
            assert!(text.ends_with(parts.id), "the id is the key's tail");
        }
    }
});
