use super::*;
use crate::auth::credentials::parse_sha256_hex;
use crate::config::{CredentialSource, ModelProvider, ProviderStyle};
use crate::identity::Grants;
use crate::provider::CLUSTER_HEADER;
use crate::testing::{ed25519_jwk, Fixture};
use jwt_simple::prelude::*;

fn compile(fx: &Fixture) -> Result<Policy, InvalidConfig> {
    Policy::compile(&fx.config, &|name| {
        (name == "OPENAI_KEY").then(|| "sk-from-env".to_string())
    })
}

#[test]
fn fixture_compiles_and_routes_by_prefix_and_method() {
    let policy = Fixture::new().policy();
    assert_eq!(
        policy
            .route_for("/v1/chat/completions", "POST")
            .unwrap()
            .name,
        "chat"
    );
    assert!(policy.route_for("/v1/chat/completions", "GET").is_none());
    assert_eq!(
        policy.route_for("/v1/models/gpt-4o", "GET").unwrap().name,
        "models"
    );
    assert!(policy.route_for("/v2/other", "POST").is_none());
}

#[test]
fn unknown_fields_are_refused_with_their_name() {
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["routes"][0]["max_body_byte"] = 5.into();
    let err = Policy::from_json(json.to_string().as_bytes(), &|_| None).unwrap_err();
    assert!(
        matches!(&err, InvalidConfig::Syntax(m) if m.contains("max_body_byte")),
        "{err}"
    );
}

#[test]
fn config_round_trips_through_json() {
    let fx = Fixture::new();
    let json = serde_json::to_string(&fx.config).unwrap();
    assert_eq!(
        crate::config::Config::from_json(json.as_bytes()).unwrap(),
        fx.config
    );
}

#[test]
fn provider_credentials_take_each_providers_style() {
    let policy = Fixture::new().policy();
    let header = |route: &str| {
        let route = policy.route_for(route, "POST").unwrap();
        let ProviderChoice::Fixed(provider) = &route.provider else {
            panic!("fixed provider expected")
        };
        provider.upstream_headers[0].clone()
    };
    assert_eq!(
        header("/v1/chat/completions"),
        (
            "authorization".into(),
            b"Bearer sk-upstream-openai".to_vec()
        )
    );
    assert_eq!(
        header("/v1/messages"),
        ("x-api-key".into(), b"sk-ant-upstream".to_vec())
    );
}

#[test]
fn env_credential_is_read_and_a_missing_one_refuses_the_config() {
    let mut fx = Fixture::new();
    fx.config.providers[0].credential = CredentialSource::Env("OPENAI_KEY".into());
    let policy = compile(&fx).unwrap();
    let route = policy.route_for("/v1/models", "GET").unwrap();
    let ProviderChoice::Fixed(provider) = &route.provider else {
        panic!()
    };
    assert_eq!(provider.upstream_headers[0].1, b"Bearer sk-from-env");
    fx.config.providers[0].credential = CredentialSource::Env("NOT_SET".into());
    assert_eq!(
        compile(&fx).unwrap_err(),
        InvalidConfig::MissingEnvCredential {
            index: 0,
            var: "NOT_SET".into()
        }
    );
}

#[test]
fn invalid_documents_are_refused_whole() {
    type Mutation = Box<dyn Fn(&mut Fixture)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|fx| fx.config.issuer.clear()), "issuer"),
        (Box::new(|fx| fx.config.audiences.clear()), "audiences"),
        (
            Box::new(|fx| {
                let other = Ed25519KeyPair::generate();
                fx.config.keys.keys.push(ed25519_jwk(&other, Some("k2")));
            }),
            "kid",
        ),
        (
            Box::new(|fx| {
                let k = ed25519_jwk(&fx.key, Some("same"));
                fx.config.keys.keys = vec![k.clone(), k];
            }),
            "twice",
        ),
        (
            Box::new(|fx| fx.config.keys.keys[0].x = Some("!!".into())),
            "base64url",
        ),
        (
            Box::new(|fx| fx.config.providers.push(fx.config.providers[0].clone())),
            "twice",
        ),
        (
            Box::new(|fx| {
                fx.config.providers[0].credential = CredentialSource::Inline("a\nb".into())
            }),
            "credential",
        ),
        (
            Box::new(|fx| {
                fx.config.providers[0]
                    .headers
                    .insert("Authorization".into(), "x".into());
            }),
            "header",
        ),
        (
            Box::new(|fx| fx.config.routes[0].path_prefix = "v1".into()),
            "path_prefix",
        ),
        (
            Box::new(|fx| fx.config.routes[1].name = "chat".into()),
            "twice",
        ),
        (
            Box::new(|fx| fx.config.routes[0].methods = vec!["post".into()]),
            "method",
        ),
        (
            Box::new(|fx| {
                fx.config.routes[1].model_providers = vec![ModelProvider {
                    pattern: "*".into(),
                    provider: "openai".into(),
                }]
            }),
            "exactly one",
        ),
        (
            Box::new(|fx| fx.config.routes[2].provider = Some("nope".into())),
            "unknown provider",
        ),
        (
            Box::new(|fx| {
                fx.config.routes[2].provider = None;
                fx.config.routes[2].model_providers = vec![ModelProvider {
                    pattern: "*".into(),
                    provider: "openai".into(),
                }];
            }),
            "model_source",
        ),
        (
            Box::new(|fx| {
                // A body model comes too late to pick the upstream in proxy-wasm.
                fx.config.routes[0].provider = None;
                fx.config.routes[0].model_providers = vec![ModelProvider {
                    pattern: "*".into(),
                    provider: "openai".into(),
                }];
            }),
            "gemini_path",
        ),
        (
            Box::new(|fx| fx.config.routes[0].max_body_bytes = 0),
            "max_body_bytes",
        ),
        (
            Box::new(|fx| {
                fx.add_api_key("svc", &[], &[]);
                fx.config.api_keys[0].sha256 = "ABC".into();
            }),
            "sha256",
        ),
    ];
    for (i, (mutate, expected)) in cases.iter().enumerate() {
        let mut fx = Fixture::new();
        mutate(&mut fx);
        let err = compile(&fx).expect_err(&format!("case {i} should be refused"));
        assert!(
            err.to_string().contains(expected),
            "case {i}: {err} lacks {expected:?}"
        );
    }
}

#[test]
fn providers_of_every_style() {
    let mut fx = Fixture::new();
    fx.config.providers.push(crate::testing::provider(
        "azure",
        ProviderStyle::AzureOpenai,
        "az-key",
    ));
    fx.config.routes[2].provider = Some("azure".into());
    let policy = compile(&fx).unwrap();
    let ProviderChoice::Fixed(azure) = &policy.route_for("/v1/models", "GET").unwrap().provider
    else {
        panic!()
    };
    assert_eq!(
        azure.upstream_headers[0],
        ("api-key".to_string(), b"az-key".to_vec())
    );
    assert!(azure
        .upstream_headers
        .contains(&(CLUSTER_HEADER.to_string(), b"azure_cluster".to_vec())));
    assert!(azure
        .upstream_headers
        .contains(&(":authority".to_string(), b"api.azure.test".to_vec())));
}

#[test]
fn the_documented_example_compiles() {
    let doc = include_str!("../../../docs/config.md");
    let start = doc
        .find("```json\n")
        .expect("docs/config.md has a JSON example")
        + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let env = |name: &str| Some(format!("{name}-value"));
    let policy = Policy::from_json(&doc.as_bytes()[start..end], &env).unwrap();
    assert!(policy
        .route_for("/v1beta/models/gemini-2.0-flash:generateContent", "POST")
        .is_some());
    assert!(policy.key_for(Some("legacy-p256")).is_some());
}

#[test]
fn the_shipped_envoy_example_compiles() {
    // envoy/envoy.yaml carries an example document inline; it must stay valid.
    let yaml = include_str!("../../../envoy/envoy.yaml");
    let start = yaml.find("value: |\n").expect("inline configuration") + "value: |\n".len();
    let json: String = yaml[start..]
        .lines()
        .take_while(|l| l.starts_with("                    "))
        .map(|l| format!("{l}\n"))
        .collect();
    let env = |name: &str| Some(format!("{name}-value"));
    Policy::from_json(json.as_bytes(), &env).unwrap();
}

#[test]
fn syntax_errors_name_the_field_but_not_the_value() {
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["routes"][0]["max_body_bytes"] = "provider-key-in-the-wrong-field".into();
    json["cach"] = serde_json::json!({});
    let err = Policy::from_json(json.to_string().as_bytes(), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("provider-key-in"), "{err}");
    assert!(
        err.contains("invalid type") || err.contains("cach"),
        "{err}"
    );
    let err = Policy::from_json(
        br#"{"issuer":"x","audiences":["a"],"providers":[],"routes":[],"cach":{}}"#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `cach`"), "{err}");
}

/// The document as Envoy hands it over, loaded the way the filter loads it.
fn load(json: &serde_json::Value) -> Result<Policy, InvalidConfig> {
    Policy::load(json.to_string().as_bytes(), &|name| {
        (name == "OPENAI_KEY").then(|| "sk-from-env".to_string())
    })
}

fn unavailable(policy: &Policy) -> Vec<(PartKind, String)> {
    policy
        .unavailable()
        .iter()
        .map(|p| (p.kind, p.name.clone()))
        .collect()
}

#[test]
fn a_provider_without_its_credential_is_unavailable_and_the_rest_loads() {
    let mut fx = Fixture::new();
    fx.config.providers[0].credential = CredentialSource::Env("NOT_THERE".into());
    fx.config.revocations.subjects = vec!["mallory".into()];
    let json = serde_json::to_value(&fx.config).unwrap();
    let policy = load(&json).unwrap();
    assert_eq!(
        unavailable(&policy),
        vec![(PartKind::Provider, "openai".to_string())]
    );
    assert!(matches!(
        policy.unavailable()[0].reason,
        InvalidConfig::MissingEnvCredential { .. }
    ));
    let chat = policy.route_for("/v1/chat/completions", "POST").unwrap();
    let ProviderChoice::Fixed(openai) = &chat.provider else {
        panic!("fixed provider expected")
    };
    assert!(openai.unavailable && openai.upstream_headers.is_empty());
    let messages = policy.route_for("/v1/messages", "POST").unwrap();
    let ProviderChoice::Fixed(anthropic) = &messages.provider else {
        panic!("fixed provider expected")
    };
    assert!(!anthropic.unavailable);
    assert!(policy.credentials.revocations.revokes(&Identity::api_key(
        "k".into(),
        "mallory",
        Default::default(),
        None
    )));
    // The control plane's check stays strict.
    assert!(matches!(
        Policy::compile(&fx.config, &|_| None),
        Err(InvalidConfig::MissingEnvCredential { .. })
    ));
}

#[test]
fn an_unreadable_route_keeps_its_place_so_nothing_falls_through_to_a_broader_one() {
    let mut fx = Fixture::new();
    fx.config.routes.push(RouteConfig {
        provider: Some("openai".into()),
        ..crate::testing::route("everything", "/v1/")
    });
    let mut json = serde_json::to_value(&fx.config).unwrap();
    // A field from a newer control plane.
    json["routes"][0]["retry_budget"] = 3.into();
    let policy = load(&json).unwrap();
    assert_eq!(
        unavailable(&policy),
        vec![(PartKind::Route, "chat".to_string())]
    );
    let chat = policy.route_for("/v1/chat/completions", "POST").unwrap();
    assert_eq!(chat.name, "chat");
    assert!(matches!(chat.provider, ProviderChoice::Unavailable));
    assert_eq!(
        policy.route_for("/v1/embeddings", "POST").unwrap().name,
        "everything"
    );

    // Without a readable prefix it stands for every path after its place.
    json["routes"][0]["path_prefix"] = 7.into();
    let policy = load(&json).unwrap();
    let route = policy.route_for("/v1/embeddings", "POST").unwrap();
    assert!(matches!(route.provider, ProviderChoice::Unavailable));
}

#[test]
fn an_invalid_route_becomes_unavailable_with_its_reason() {
    let mut fx = Fixture::new();
    fx.config.routes[2].provider = Some("nobody".into());
    let json = serde_json::to_value(&fx.config).unwrap();
    let policy = load(&json).unwrap();
    assert_eq!(policy.unavailable().len(), 1);
    assert_eq!(
        policy.unavailable()[0].reason,
        InvalidConfig::UnknownProvider {
            index: 2,
            provider: "nobody".into()
        }
    );
    let models = policy.route_for("/v1/models", "GET").unwrap();
    assert!(matches!(models.provider, ProviderChoice::Unavailable));
    // Its methods still limit what it stands for.
    assert!(policy.route_for("/v1/models", "POST").is_none());
}

#[test]
fn plans_and_prices_that_cannot_load_refuse_their_credentials_not_the_document() {
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["plans"] = serde_json::json!({
        "free": {"limits": [{"name": "rpm", "metric": "requests", "window": "minute", "limit": 5}]},
        "odd": {"limits": [], "surge_pricing": true},
        "money": {"limits": [{"name": "usd", "metric": "cost_micro_usd", "window": "month", "limit": 5}]}
    });
    json["default_plan"] = "odd".into();
    json["prices"] = serde_json::json!([{"model": "gpt-*", "input": "cheap", "output": 1}]);
    let policy = load(&json).unwrap();
    let mut parts = unavailable(&policy);
    parts.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        parts,
        vec![
            (PartKind::Price, "gpt-*".to_string()),
            (PartKind::Plan, "money".to_string()),
            (PartKind::Plan, "odd".to_string()),
        ]
    );
    let who = |plan: Option<&str>| {
        Identity::api_key(
            "k".into(),
            "a",
            Arc::new(Grants {
                plan: plan.map(str::to_string),
                ..Grants::default()
            }),
            None,
        )
    };
    let code = |plan| {
        policy
            .quotas
            .plan_for(&who(plan))
            .map(|p| p.map(|p| p.name.clone()))
    };
    assert_eq!(code(Some("free")), Ok(Some("free".into())));
    for plan in [Some("odd"), Some("money"), None] {
        assert_eq!(
            code(plan).unwrap_err().code,
            crate::error::ErrorCode::PlanUnavailable,
            "{plan:?}"
        );
    }
    assert_eq!(
        code(Some("gold")).unwrap_err().code,
        crate::error::ErrorCode::UnknownPlan
    );
}

#[test]
fn keys_that_cannot_load_are_left_out_and_a_repeated_kid_is_left_out_altogether() {
    let mut fx = Fixture::new();
    let other = Ed25519KeyPair::generate();
    let third = Ed25519KeyPair::generate();
    fx.config.keys.keys = vec![
        ed25519_jwk(&fx.key, Some("good")),
        ed25519_jwk(&other, Some("twice")),
        ed25519_jwk(&third, Some("twice")),
    ];
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["keys"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kty": "OKP", "kid": "broken", "crv": "Ed25519", "x": 5}));
    let policy = load(&json).unwrap();
    let mut parts = unavailable(&policy);
    parts.sort();
    assert_eq!(
        parts,
        vec![
            (PartKind::Key, "broken".to_string()),
            (PartKind::Key, "twice".to_string()),
            (PartKind::Key, "twice".to_string()),
        ]
    );
    assert!(policy.key_for(Some("good")).is_some());
    assert!(policy.key_for(Some("twice")).is_none());
}

#[test]
fn a_broken_security_core_still_refuses_the_whole_document() {
    let fx = Fixture::new();
    let good = serde_json::to_value(&fx.config).unwrap();
    let mut cases = Vec::new();
    let mut json = good.clone();
    json["revocations"]["subjects"] = serde_json::json!([1]);
    cases.push(json);
    let mut json = good.clone();
    json["issuer"] = "".into();
    cases.push(json);
    let mut json = good.clone();
    json["routes"] = serde_json::json!({"chat": {}});
    cases.push(json);
    let mut json = good.clone();
    json["unknown_setting"] = true.into();
    cases.push(json);
    for json in cases {
        assert!(load(&json).is_err(), "{json}");
    }
    assert!(load(&good).unwrap().unavailable().is_empty());
}

#[test]
fn unavailable_parts_have_bounded_stat_names() {
    let part = UnavailablePart {
        kind: PartKind::Provider,
        name: "Open.AI/EU west".into(),
        reason: InvalidConfig::ProviderFields(0),
    };
    assert_eq!(
        part.stat_name(),
        "tokenward.config.unavailable.provider.open_ai_eu_west"
    );
}

#[test]
fn regression_a_repeated_key_anywhere_refuses_the_document() {
    let fx = Fixture::new();
    let json = serde_json::to_string(&fx.config).unwrap();
    let doubled = json.replacen('{', r#"{"revocations":{"subjects":["alice"]},"#, 1);
    assert!(Policy::load(doubled.as_bytes(), &|_| None).is_err());
    let nested = json.replacen(
        r#""name":"chat""#,
        r#""name":"chat","required_scopes":[],"required_scopes":["chat"]"#,
        1,
    );
    assert_ne!(nested, json);
    assert!(Policy::load(nested.as_bytes(), &|_| None).is_err());
}

#[test]
fn regression_a_repeated_api_key_hash_stands_for_no_one_whichever_twin_loads() {
    let mut fx = Fixture::new();
    fx.add_api_key("restricted", &["chat"], &["gpt-4o-mini"]);
    let twin = |fx: &Fixture| {
        let mut entry = fx.config.api_keys[0].clone();
        entry.id = "admin-twin".into();
        entry.subject = "admin".into();
        entry.models = vec!["*".into()];
        entry
    };
    let hash = parse_sha256_hex(&fx.config.api_keys[0].sha256).unwrap();
    // The first twin names a plan that does not exist, so it alone would be left out.
    let mut with_bad_plan = fx.config.clone();
    with_bad_plan.api_keys[0].plan = Some("gold".into());
    with_bad_plan.api_keys.push(twin(&fx));
    // An upper-case copy of the digest, and an unreadable twin.
    let mut upper = fx.config.clone();
    let mut shouted = twin(&fx);
    shouted.sha256 = shouted.sha256.to_ascii_uppercase();
    upper.api_keys.insert(0, shouted);
    for config in [with_bad_plan, upper] {
        let json = serde_json::to_value(&config).unwrap();
        let policy = load(&json).unwrap();
        assert!(policy.api_key(&hash).is_none(), "{json}");
    }
    let mut json = serde_json::to_value(&fx.config).unwrap();
    let mut unreadable = serde_json::to_value(twin(&fx)).unwrap();
    unreadable["colour"] = "red".into();
    json["api_keys"].as_array_mut().unwrap().push(unreadable);
    assert!(load(&json).unwrap().api_key(&hash).is_none());
}

#[test]
fn regression_a_repeated_kid_with_an_unreadable_twin_is_left_out() {
    let mut fx = Fixture::new();
    let other = Ed25519KeyPair::generate();
    fx.config.keys.keys = vec![
        ed25519_jwk(&fx.key, Some("k1")),
        ed25519_jwk(&other, Some("k1")),
    ];
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["keys"]["keys"][1]["x5c"] = serde_json::json!(["cert"]);
    let policy = load(&json).unwrap();
    assert!(policy.key_for(Some("k1")).is_none());
}

#[test]
fn regression_a_provider_key_typed_as_the_credential_is_not_in_the_reason() {
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["providers"][0]["credential"] = "sk-live-SECRET123".into();
    let policy = load(&json).unwrap();
    let reason = policy.unavailable()[0].reason.to_string();
    assert!(!reason.contains("SECRET"), "{reason}");
    assert!(reason.contains("unknown variant"), "{reason}");
    let strict = Policy::from_json(json.to_string().as_bytes(), &|_| None).unwrap_err();
    assert!(!strict.to_string().contains("SECRET"), "{strict}");
}

#[test]
fn a_route_with_when_header_matches_only_requests_carrying_it() {
    let mut fx = Fixture::new();
    let mut anthropic = crate::testing::route("anthropic-models", "/v1/models");
    anthropic.methods = vec!["GET".into()];
    anthropic.provider = Some("anthropic".into());
    anthropic.when_header = Some("anthropic-version".into());
    fx.config.routes.insert(0, anthropic);
    let policy = fx.policy();
    let with = |name: &str| name == "anthropic-version";
    assert_eq!(
        policy
            .route_for_request("/v1/models", "GET", &with)
            .unwrap()
            .name,
        "anthropic-models"
    );
    assert_eq!(
        policy
            .route_for_request("/v1/models", "GET", &|_| false)
            .unwrap()
            .name,
        "models"
    );
    fx.config.routes[0].when_header = Some("Anthropic Version".into());
    let json = serde_json::to_value(&fx.config).unwrap().to_string();
    assert!(matches!(
        Policy::from_json(json.as_bytes(), &|_| None),
        Err(InvalidConfig::BadRouteHeader(0))
    ));
}

#[test]
fn a_plans_spike_section_loads_and_leaves_the_requests_alone() {
    // Spike detection is the control plane's; the filter must accept the field (the document
    // is one schema) and refuse a misspelt one inside it like anywhere else.
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["plans"]["watched"] = serde_json::json!({
        "limits": [],
        "spike": {"multiple": 10, "metric": "total_tokens", "min_baseline": 1000, "action": "suspend"}
    });
    let policy = Policy::from_json(json.to_string().as_bytes(), &|name| {
        (name == "OPENAI_KEY").then(|| "sk-from-env".to_string())
    });
    assert!(policy.is_ok(), "{:?}", policy.err());
    json["plans"]["watched"]["spike"]["multipel"] = 10.into();
    let err = Policy::from_json(json.to_string().as_bytes(), &|_| None).unwrap_err();
    assert!(
        matches!(&err, InvalidConfig::Syntax(m) if m.contains("multipel")),
        "{err}"
    );
}
