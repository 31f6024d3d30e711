//! The configuration compiler: `Policy::from_json` over any bytes, with an environment that
//! knows some variables. Properties: nothing panics; a document that parses survives a
//! round trip through serialization (the control plane renders what the filter reads) and
//! compiles the same way afterwards; a compiled policy finds every route, key and price it
//! was given, and prices any usage without overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_filter::config::Config;
use tokenward_filter::policy::Policy;
use tokenward_filter::usage::Usage;

/// Variables starting with `SET_` exist (some with values no header may carry), others not.
fn env(name: &str) -> Option<String> {
    match name.strip_prefix("SET_")? {
        "BAD" => Some("line\nbreak".into()),
        "EMPTY" => Some(String::new()),
        _ => Some("sk-fuzz-provider-credential".into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let compiled = Policy::from_json(data, &env);
    let Ok(config) = Config::from_json(data) else {
        assert!(compiled.is_err(), "compiled a document that does not parse");
        return;
    };
    let rendered = match serde_json::to_vec(&config) {
        Ok(rendered) => rendered,
        Err(e) => panic!("a parsed config does not serialize: {e}"),
    };
    match Config::from_json(&rendered) {
        Ok(again) => assert_eq!(again, config, "config round trip"),
        Err(e) => panic!("a rendered config does not parse: {e}"),
    }
    let recompiled = Policy::from_json(&rendered, &env);
    assert_eq!(
        compiled.as_ref().err(),
        recompiled.as_ref().err(),
        "the rendered config compiles differently"
    );
    let Ok(policy) = compiled else {
        return;
    };
    for route in &config.routes {
        let method = route.methods.first().map_or("GET", String::as_str);
        assert!(
            policy.route_for(&route.path_prefix, method).is_some(),
            "route {:?} unreachable at its own prefix",
            route.name
        );
    }
    for key in &config.keys.keys {
        let found = policy.key_for(key.kid.as_deref());
        assert!(found.is_some(), "key {:?} not found by its kid", key.kid);
    }
    for price in &config.prices {
        let Some(found) = policy.quotas.price_for(&price.model) else {
            panic!("price pattern {:?} does not match itself", price.model);
        };
        let most = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            cached_input_tokens: u64::MAX / 2,
        };
        found.cost(&most);
    }
});
