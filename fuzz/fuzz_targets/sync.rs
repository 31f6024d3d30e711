//! What the sync channel reads: a plugin configuration that may be a bootstrap, and the usage
//! reports the control plane takes. Properties: nothing panics; a document is a bootstrap or
//! a whole configuration, never both; a report that parses survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_filter::config::Bootstrap;
use tokenward_filter::sync::{PluginConfig, SyncReport};

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
});
