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

const MINTED: &str = "0123456789abcdef0f1e2d3c4b5a6978";

#[test]
fn a_minted_jti_is_kept_as_16_bytes_and_spelled_back_exactly() {
    let identity = jwt("user-000001", Some(MINTED));
    assert_eq!(&*identity.names, "user-000001", "no text but the subject");
    assert_eq!(identity.subject(), "user-000001");
    assert_eq!(identity.jti().unwrap().to_string(), MINTED);
    assert_eq!(identity.jti().unwrap(), MINTED);
    assert_eq!(identity.jti(), Some(Jti::new(MINTED)));
}

#[test]
fn a_jti_that_is_not_32_lowercase_hex_digits_is_kept_as_text() {
    let upper = MINTED.to_ascii_uppercase();
    let mixed = format!("{}A", &MINTED[..31]);
    let non_hex = format!("{}g", &MINTED[..31]);
    let short = &MINTED[..31];
    let long = format!("{MINTED}0");
    let wide = format!("{}é", &MINTED[..30]);
    for jti in [
        &*upper, &*mixed, &*non_hex, short, &*long, &*wide, "jti-1", "",
    ] {
        let identity = jwt("alice", Some(jti));
        assert_eq!(&*identity.names, format!("alice{jti}"), "{jti}");
        assert_eq!(identity.jti().unwrap().to_string(), jti);
        assert_eq!(identity.jti().unwrap(), jti);
        assert_ne!(identity.jti().unwrap(), MINTED);
    }
}

#[test]
fn every_byte_survives_the_hex_form() {
    for byte in 0..=u8::MAX {
        let jti: String = std::iter::repeat_n(format!("{byte:02x}"), 16).collect();
        let identity = jwt("a", Some(&jti));
        assert_eq!(&*identity.names, "a");
        assert_eq!(identity.jti().unwrap().to_string(), jti);
    }
}

#[test]
fn a_jti_set_matches_a_minted_jti_only_as_spelled() {
    let upper = MINTED.to_ascii_uppercase();
    let set: JtiSet = [MINTED].into_iter().collect();
    assert!(set.contains(jwt("a", Some(MINTED)).jti().unwrap()));
    assert!(!set.contains(jwt("a", Some(&upper)).jti().unwrap()));
    let mut other = *b"0123456789abcdef0f1e2d3c4b5a6978";
    other[31] = b'9';
    let other = std::str::from_utf8(&other).unwrap();
    assert!(!set.contains(jwt("a", Some(other)).jti().unwrap()));
    // And an upper-case id revokes itself only.
    let set: JtiSet = [upper.as_str()].into_iter().collect();
    assert!(set.contains(jwt("a", Some(&upper)).jti().unwrap()));
    assert!(!set.contains(jwt("a", Some(MINTED)).jti().unwrap()));
}

#[test]
fn a_jti_set_finds_each_of_many_minted_jtis_in_any_order() {
    let minted = |n: u64| format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let revoked: Vec<String> = (0..200).rev().map(|n| minted(n * 2)).collect();
    let set: JtiSet = revoked
        .iter()
        .map(String::as_str)
        .chain(["jti-1"])
        .collect();
    for n in 0..400 {
        assert_eq!(set.contains(Jti::new(&minted(n))), n % 2 == 0, "{n}");
    }
    assert!(set.contains(Jti::new("jti-1")));
}
