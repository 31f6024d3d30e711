use serde_json::json;

use crate::config::{
    default_max_body_bytes, CacheConfig, Config, CredentialSource, FailedAuthConfig, PlanConfig,
    ProviderConfig, ProviderStyle, RouteConfig,
};

fn route(value: serde_json::Value) -> Result<RouteConfig, String> {
    RouteConfig::read(&value).map_err(|e| e.to_string())
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
    let err = Config::read(&doc).unwrap_err().to_string();
    assert_eq!(
        err,
        "routes[1].max_body_bytes: invalid type: string, expected u64"
    );
    let doc = json!({"issuer": "i", "audiences": ["a"], "providers": [], "routes": [],
        "plans": {"free": {"limits": [{"name": "n", "metric": "requests", "window": "week", "limit": 1}]}}});
    let err = Config::read(&doc).unwrap_err().to_string();
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
    let config =
        Config::read(&json!({"issuer": "i", "audiences": ["a"], "providers": [], "routes": []}))
            .unwrap();
    assert_eq!(config.clock_skew_seconds, 30);
    assert_eq!(config.cache, CacheConfig::default());
    let guard = FailedAuthConfig::read(&json!({})).unwrap();
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
    let err = FailedAuthConfig::read(&json!({"threshold": 5_000_000_000u64})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "threshold: invalid value: integer out of range, expected u32"
    );
    assert_eq!(
        FailedAuthConfig::read(&json!({"threshold": u32::MAX}))
            .unwrap()
            .threshold,
        u32::MAX
    );
}

#[test]
fn enums_read_by_their_snake_case_names_only() {
    let provider = |style: &str, credential: serde_json::Value| {
        ProviderConfig::read(&json!({"name": "p", "style": style, "cluster": "c",
            "authority": "a", "credential": credential}))
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
    assert_eq!(plan, PlanConfig::read(&json!({"limits": []})).unwrap());
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
