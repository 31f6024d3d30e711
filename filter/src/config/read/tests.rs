use serde_json::{json, Value};

use super::{unique_node, Node};
use crate::config::{
    default_max_body_bytes, CacheConfig, Config, CredentialSource, FailedAuthConfig, PlanConfig,
    ProviderConfig, ProviderStyle, RateLimitHeaders, RouteConfig,
};

/// A `Value` as the readers see it, through the `Deserialize` bridge.
fn node(value: Value) -> Node<'static> {
    unique_node(value).unwrap()
}

fn route(value: Value) -> Result<RouteConfig, String> {
    RouteConfig::read(&node(value)).map_err(|e| e.to_string())
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let err = route(json!({"name": "r", "path_prefix": "/", "colour": "red"})).unwrap_err();
    assert!(
        err.starts_with("unknown field `colour`, expected one of `name`"),
        "{err}"
    );
}

#[test]
fn a_nested_error_names_its_path() {
    let doc = json!({
        "issuer": "i", "audiences": ["a"], "providers": [],
        "routes": [{"name": "r", "path_prefix": "/"}, {"name": "s", "path_prefix": "/s", "max_body_bytes": "sk-secret"}],
    });
    let err = Config::read(&node(doc)).unwrap_err().to_string();
    assert_eq!(
        err,
        "routes[1].max_body_bytes: invalid type: string, expected u64"
    );
    let doc = json!({"issuer": "i", "audiences": ["a"], "providers": [], "routes": [],
        "plans": {"free": {"limits": [{"name": "n", "metric": "requests", "window": "week", "limit": 1}]}}});
    let err = Config::read(&node(doc)).unwrap_err().to_string();
    assert_eq!(
        err,
        "plans.free.limits[0].window: unknown variant `…`, expected one of `minute`, `hour`, `day`, `month`"
    );
}

#[test]
fn a_missing_required_field_is_named() {
    assert_eq!(
        route(json!({"name": "r"})).unwrap_err(),
        "missing field `path_prefix`"
    );
}

#[test]
fn absent_fields_take_their_defaults() {
    let read = route(json!({"name": "r", "path_prefix": "/"})).unwrap();
    assert_eq!(read.max_body_bytes, default_max_body_bytes());
    assert!(read.methods.is_empty() && read.provider.is_none() && !read.allow_query_credential);
    let config = Config::read(&node(
        json!({"issuer": "i", "audiences": ["a"], "providers": [], "routes": []}),
    ))
    .unwrap();
    assert_eq!(config.clock_skew_seconds, 30);
    assert_eq!(config.cache, CacheConfig::default());
    let guard = FailedAuthConfig::read(&node(json!({}))).unwrap();
    assert_eq!(guard, FailedAuthConfig::default());
}

#[test]
fn null_is_none_for_an_option_and_refused_elsewhere() {
    let read = route(json!({"name": "r", "path_prefix": "/", "provider": null})).unwrap();
    assert_eq!(read.provider, None);
    let err = route(json!({"name": "r", "path_prefix": "/", "methods": null})).unwrap_err();
    assert_eq!(err, "methods: invalid type: null, expected a sequence");
}

#[test]
fn numbers_out_of_their_type_are_refused() {
    for (value, expected) in [
        (json!(-1), "invalid value: negative integer, expected u64"),
        (json!(1.5), "invalid type: floating point, expected u64"),
        (json!(1e3), "invalid type: floating point, expected u64"),
        (
            serde_json::from_str("18446744073709551616").unwrap(),
            "invalid type: floating point, expected u64",
        ),
        (json!("7"), "invalid type: string, expected u64"),
    ] {
        let err =
            route(json!({"name": "r", "path_prefix": "/", "max_body_bytes": value})).unwrap_err();
        assert_eq!(err, format!("max_body_bytes: {expected}"));
    }
    let max = route(json!({"name": "r", "path_prefix": "/", "max_body_bytes": u64::MAX})).unwrap();
    assert_eq!(max.max_body_bytes, u64::MAX);
    let err = FailedAuthConfig::read(&node(json!({"threshold": 5_000_000_000u64}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "threshold: invalid value: integer out of range, expected u32"
    );
    assert_eq!(
        FailedAuthConfig::read(&node(json!({"threshold": u32::MAX})))
            .unwrap()
            .threshold,
        u32::MAX
    );
}

#[test]
fn a_plan_sends_rate_limit_headers_always_unless_it_says_near_limit() {
    let plan = |extra: Value| {
        let mut value = json!({"limits": []});
        if let (Some(map), Value::Object(extra)) = (value.as_object_mut(), extra) {
            map.extend(extra);
        }
        PlanConfig::read(&node(value)).map_err(|e| e.to_string())
    };
    assert_eq!(
        plan(json!({})).unwrap().rate_limit_headers,
        RateLimitHeaders::Always
    );
    let near = plan(json!({"rate_limit_headers": "near_limit"})).unwrap();
    assert_eq!(near.rate_limit_headers, RateLimitHeaders::NearLimit);
    // Written only when not the default: a plan that keeps it reads as before.
    assert_eq!(
        serde_json::to_value(&near).unwrap()["rate_limit_headers"],
        "near_limit"
    );
    let always = plan(json!({"rate_limit_headers": "always"})).unwrap();
    assert!(serde_json::to_value(&always)
        .unwrap()
        .get("rate_limit_headers")
        .is_none());
    let err = plan(json!({"rate_limit_headers": "sometimes"})).unwrap_err();
    assert!(
        err.starts_with("rate_limit_headers: unknown variant"),
        "{err}"
    );
}

#[test]
fn enums_read_by_their_snake_case_names_only() {
    let provider = |style: &str, credential: Value| {
        ProviderConfig::read(&node(json!({"name": "p", "style": style, "cluster": "c",
            "authority": "a", "credential": credential})))
        .map_err(|e| e.to_string())
    };
    let read = provider("azure_openai", json!({"env": "KEY"})).unwrap();
    assert_eq!(read.style, ProviderStyle::AzureOpenai);
    assert_eq!(read.credential, CredentialSource::Env("KEY".into()));
    let err = provider("AzureOpenai", json!({"env": "KEY"})).unwrap_err();
    assert!(err.starts_with("style: unknown variant `…`"), "{err}");
    assert!(!err.contains("AzureOpenai"), "{err}");
    let err = provider("openai", json!("sk-live-SECRET")).unwrap_err();
    assert!(
        err.contains("unknown variant") && !err.contains("SECRET"),
        "{err}"
    );
    let err = provider("openai", json!({"inline": "sk", "env": "K"})).unwrap_err();
    assert!(err.starts_with("credential: invalid type: map"), "{err}");
    let err = provider("openai", json!({"file": "/k"})).unwrap_err();
    assert_eq!(
        err,
        "credential: unknown variant `…`, expected `inline` or `env`"
    );
}

#[test]
fn deserialize_goes_through_the_reader_and_refuses_a_repeated_key() {
    let plan: PlanConfig = serde_json::from_str(r#"{"limits": []}"#).unwrap();
    assert_eq!(
        plan,
        PlanConfig::read(&node(json!({"limits": []}))).unwrap()
    );
    let err =
        serde_json::from_str::<PlanConfig>(r#"{"limits": [], "shadow": true, "shadow": false}"#)
            .unwrap_err();
    assert!(
        err.to_string().contains("duplicate field `shadow`"),
        "{err}"
    );
    let err = serde_json::from_str::<PlanConfig>(r#"{"limits": [], "shade": true}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `shade`"), "{err}");
    let err = Config::from_json(
        br#"{"issuer":"i","issuer":"j","audiences":["a"],"providers":[],"routes":[]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("duplicate field `issuer`"),
        "{err}"
    );
}

#[test]
fn numbers_in_text_are_classed_as_serde_json_classes_them() {
    let max_body = |number: &str| {
        let text = format!(r#"{{"name": "r", "path_prefix": "/", "max_body_bytes": {number}}}"#);
        super::from_json(text.as_bytes(), RouteConfig::read)
            .map(|r| r.max_body_bytes)
            .map_err(|e| e.to_string())
    };
    assert_eq!(max_body("0"), Ok(0));
    assert_eq!(max_body("18446744073709551615"), Ok(u64::MAX));
    let float = "max_body_bytes: invalid type: floating point, expected u64";
    for number in [
        "1e3",
        "1.0",
        "-0",
        "18446744073709551616",
        "-9223372036854775809",
    ] {
        assert_eq!(max_body(number).unwrap_err(), float, "{number}");
    }
    let negative = "max_body_bytes: invalid value: negative integer, expected u64";
    for number in ["-1", "-9223372036854775808"] {
        assert_eq!(max_body(number).unwrap_err(), negative, "{number}");
    }
}

#[test]
fn a_repeated_key_in_a_map_is_refused_too() {
    let err = Config::from_json(
        br#"{"issuer":"i","audiences":["a"],"providers":[],"routes":[],
            "plans":{"free":{"limits":[]},"free":{"limits":[]}}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("duplicate field `free`"), "{err}");
}
