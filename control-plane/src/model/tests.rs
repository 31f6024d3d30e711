use super::*;

fn key(
    kid: &str,
    activate_at: u64,
    retired_at: Option<u64>,
    publish_until: Option<u64>,
) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: Alg::EdDSA,
        public_jwk: Jwk {
            kty: "OKP".into(),
            kid: Some(kid.into()),
            alg: None,
            use_: None,
            crv: None,
            x: None,
            y: None,
            k: None,
            allow_symmetric: false,
        },
        private_sealed: vec![],
        created_at: 0,
        activate_at,
        retired_at,
        publish_until,
    }
}

#[test]
fn a_key_is_announced_then_active_then_retired_then_removed() {
    let k = key("k", 100, Some(200), Some(300));
    assert_eq!(k.state(50), KeyState::Announced);
    assert_eq!(k.state(100), KeyState::Active);
    assert_eq!(k.state(200), KeyState::Retired);
    assert_eq!(k.state(300), KeyState::Removed);
}

#[test]
fn the_newest_active_key_signs_and_every_unremoved_key_is_published() {
    let keys = vec![
        key("old", 0, Some(100), Some(200)),
        key("current", 100, None, None),
        key("next", 500, None, None),
    ];
    assert_eq!(signing_key(&keys, 50).unwrap().kid, "old");
    assert_eq!(signing_key(&keys, 150).unwrap().kid, "current");
    let published: Vec<_> = published_keys(&keys, 150)
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(
        published,
        ["old", "current", "next"],
        "next is announced before it signs"
    );
    let published: Vec<_> = published_keys(&keys, 250)
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(published, ["current", "next"]);
}

#[test]
fn identifiers_are_printable_without_spaces() {
    assert!(valid_identifier("team-a/alice@example.com"));
    assert!(!valid_identifier(""));
    assert!(!valid_identifier("two words"));
    assert!(!valid_identifier(&"x".repeat(257)));
}

fn provider(name: &str, credential: CredentialSource) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        style: tokenward_filter::config::ProviderStyle::Openai,
        cluster: name.into(),
        authority: "api.example.com".into(),
        credential,
        headers: Default::default(),
    }
}

fn status(availability: &Availability) -> &'static str {
    match availability {
        Availability::Available => "available",
        Availability::Unavailable { .. } => "unavailable",
        Availability::Unknown { .. } => "unknown",
    }
}

#[test]
fn a_provider_whose_variable_serve_does_not_pass_into_the_vm_is_unavailable_in_every_envoy() {
    let providers = [
        provider("openai", CredentialSource::Env("OPENAI_API_KEY".into())),
        provider("x", CredentialSource::Env("NOT_THERE".into())),
        provider("sealed", CredentialSource::Inline("secret".into())),
    ];
    let keys = ["OPENAI_API_KEY".to_string(), "GEMINI_API_KEY".to_string()];
    let found = provider_availability(&providers, Some(&keys), &[]);
    let statuses: Vec<(&str, &str)> = found
        .iter()
        .map(|(name, a)| (name.as_str(), status(a)))
        .collect();
    assert_eq!(
        statuses,
        [
            ("openai", "available"),
            ("x", "unavailable"),
            ("sealed", "available")
        ]
    );
    let Availability::Unavailable { reason } = &found[1].1 else {
        unreachable!()
    };
    assert!(
        reason.contains("\"NOT_THERE\"") && reason.contains("OPENAI_API_KEY, GEMINI_API_KEY"),
        "the reason names the variable and what is passed: {reason}"
    );
    // Variable names are case-sensitive in Envoy's environment, as everywhere.
    let lower = [provider(
        "y",
        CredentialSource::Env("openai_api_key".into()),
    )];
    assert_eq!(
        status(&provider_availability(&lower, Some(&keys), &[])[0].1),
        "unavailable"
    );
    let none = provider_availability(&providers[1..2], Some(&[]), &[]);
    assert!(
        matches!(&none[0].1, Availability::Unavailable { reason } if reason.contains("--env-key: none"))
    );
}

#[test]
fn without_ads_an_environment_credential_is_unknown_and_what_envoys_report_counts() {
    let providers = [
        provider("Bad.One", CredentialSource::Env("OPENAI_API_KEY".into())),
        provider("good", CredentialSource::Env("OPENAI_API_KEY".into())),
    ];
    let found = provider_availability(&providers, None, &[]);
    assert_eq!(status(&found[0].1), "unknown");
    let reported = [ConfigPart {
        kind: "provider".into(),
        name: "bad_one".into(),
    }];
    let keys = ["OPENAI_API_KEY".to_string()];
    let found = provider_availability(
        &providers,
        Some(&keys),
        &[("gw-1", &reported), ("gw-2", &[])],
    );
    assert!(
        matches!(&found[0].1, Availability::Unavailable { reason } if reason.contains("Envoy gw-1 could")),
        "{found:?}"
    );
    assert_eq!(status(&found[1].1), "available");
}

#[test]
fn stat_names_are_lowercase_ascii_digits_dash_and_underscore_at_most_64() {
    assert_eq!(stat_name("Bad.One"), "bad_one");
    assert_eq!(stat_name("azure-eu_2"), "azure-eu_2");
    assert_eq!(stat_name("gpt-4o*"), "gpt-4o_");
    assert_eq!(stat_name("modèle"), "mod_le");
    assert_eq!(stat_name(&"a".repeat(100)).len(), 64);
}
