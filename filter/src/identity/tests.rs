use super::*;

fn jwt(subject: &str, jti: Option<&str>) -> Identity {
    Identity::jwt(
        subject,
        jti,
        Some("key-1".into()),
        Default::default(),
        Some(1_000),
    )
}

#[test]
fn a_jwt_identity_gives_back_its_subject_and_jti_exactly() {
    let long = "s".repeat(5_000);
    for subject in ["a", "alice", "zoë@例え.jp", long.as_str()] {
        for jti in [
            None,
            Some(""),
            Some("jti-1"),
            Some("ü"),
            Some(long.as_str()),
        ] {
            let identity = jwt(subject, jti);
            assert_eq!(identity.subject(), subject);
            assert_eq!(identity.jti().map(|j| j.to_string()).as_deref(), jti);
            assert_eq!(
                identity.kind(),
                CredentialKind::Jwt {
                    jti: jti.map(Jti::new),
                    kid: Some("key-1")
                }
            );
        }
    }
}

#[test]
fn an_api_key_identity_has_no_jti() {
    let identity = Identity::api_key("key-svc".into(), "svc", Default::default(), None);
    assert_eq!(identity.subject(), "svc");
    assert_eq!(identity.jti(), None);
    assert_eq!(identity.kind(), CredentialKind::ApiKey { id: "key-svc" });
    assert_eq!(identity.expires_at(), None);
}

#[test]
fn identities_differ_where_subject_and_jti_split_differently() {
    // One buffer holds both: "ab" + "c" and "a" + "bc" must stay two callers.
    assert_ne!(jwt("ab", Some("c")), jwt("a", Some("bc")));
    assert_ne!(jwt("abc", None), jwt("ab", Some("c")));
    assert_eq!(jwt("ab", Some("c")), jwt("ab", Some("c")));
}

#[test]
fn expiry_is_kept_to_the_second_and_a_later_one_than_2106_as_2106() {
    let at = |exp| Identity::jwt("a", None, None, Default::default(), exp).expires_at();
    assert_eq!(at(Some(1_800_000_000)), Some(1_800_000_000));
    assert_eq!(at(Some(u64::from(u32::MAX))), Some(u64::from(u32::MAX)));
    assert_eq!(at(Some(u64::MAX)), Some(u64::from(u32::MAX)));
    assert_eq!(at(None), None);
}

#[test]
fn a_jti_set_holds_exactly_the_ids_it_was_given() {
    let set: JtiSet = ["jti-1", "0123456789abcdef0123456789abcdef"]
        .into_iter()
        .collect();
    assert!(set.contains(Jti::new("jti-1")));
    assert!(set.contains(Jti::new("0123456789abcdef0123456789abcdef")));
    for other in ["jti-2", "JTI-1", "", "0123456789ABCDEF0123456789ABCDEF"] {
        assert!(!set.contains(Jti::new(other)), "{other}");
    }
}
