use super::*;
use crate::config::{CredentialSource, ModelProvider, ProviderStyle};
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
