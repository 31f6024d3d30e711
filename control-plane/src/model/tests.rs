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

#[test]
fn stat_names_are_lowercase_ascii_digits_dash_and_underscore_at_most_64() {
    assert_eq!(stat_name("Bad.One"), "bad_one");
    assert_eq!(stat_name("azure-eu_2"), "azure-eu_2");
    assert_eq!(stat_name("gpt-4o*"), "gpt-4o_");
    assert_eq!(stat_name("modèle"), "mod_le");
    assert_eq!(stat_name(&"a".repeat(100)).len(), 64);
}
