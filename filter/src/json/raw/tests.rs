use super::*;

fn members(text: &str) -> Result<Vec<(String, String)>, JsonError> {
    let mut found = Vec::new();
    Raw::members(text.as_bytes(), |key, value| {
        let key = decode_string(key.document, key.span.clone()).unwrap();
        found.push((key, String::from_utf8(value.text().to_vec()).unwrap()));
    })?;
    Ok(found)
}

#[test]
fn an_object_is_walked_member_by_member_and_validated_whole() {
    let text = r#" {"a" : 1, "b\u0063":[true, {"x":"y"}], "d":{"e":null} } "#;
    assert_eq!(
        members(text).unwrap(),
        vec![
            ("a".into(), "1".into()),
            ("bc".into(), r#"[true, {"x":"y"}]"#.into()),
            ("d".into(), r#"{"e":null}"#.into()),
        ]
    );
    for broken in [
        "",
        "[]",
        "1",
        r#"{"a":1"#,
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":1} x"#,
        r#"{"a":"\x"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":01}"#,
    ] {
        assert!(members(broken).is_err(), "{broken:?}");
    }
}

#[test]
fn what_serde_json_reads_as_a_u64_is_one_here_too() {
    for (number, expected) in [
        ("0", Some(0)),
        ("42", Some(42)),
        ("18446744073709551615", Some(u64::MAX)),
        ("18446744073709551616", None),
        ("-0", None),
        ("-1", None),
        ("1.0", None),
        ("1e3", None),
        (r#""5""#, None),
        ("null", None),
    ] {
        let value = Raw::parse(number.as_bytes()).unwrap();
        assert_eq!(value.as_u64(), expected, "{number}");
        let serde: serde_json::Value = serde_json::from_str(number).unwrap();
        assert_eq!(serde.as_u64(), expected, "serde_json on {number}");
    }
}

#[test]
fn members_are_found_by_decoded_key_and_the_last_of_a_repeated_key_counts() {
    let value = Raw::parse(br#"{"a":{"b":1},"\u0063":2,"c":3,"d":[]}"#).unwrap();
    assert_eq!(value.get("a").get("b").as_u64(), Some(1));
    // serde_json's `Value` keeps the last of two members with one key.
    assert_eq!(value.get("c").as_u64(), Some(3));
    assert!(value.get("missing").is_absent());
    assert!(value.get("missing").is_null());
    assert!(value.get("a").get("b").get("c").is_absent());
    assert!(value.get("d").is_empty_array());
    assert!(!value.get("a").is_empty_array());
    assert!(Raw::parse(b"[ \n ]").unwrap().is_empty_array());
}

#[test]
fn strings_are_borrowed_unless_escaped() {
    let plain = Raw::parse(br#""message_start""#).unwrap();
    assert!(matches!(plain.as_str(), Some(Cow::Borrowed("message_start"))));
    let escaped = Raw::parse(br#""a\u00e9""#).unwrap();
    assert_eq!(escaped.as_str().as_deref(), Some("aé"));
    assert_eq!(Raw::parse(br#""\ud800""#).unwrap().as_str(), None);
    assert_eq!(Raw::parse(b"\"\xff\"").unwrap().as_str(), None);
    assert_eq!(Raw::parse(b"5").unwrap().as_str(), None);
}

#[test]
fn elements_of_an_array_in_order() {
    let value = Raw::parse(br#"[ {"a":1} , 2,"x" ]"#).unwrap();
    let texts: Vec<&[u8]> = value.elements().map(Raw::text).collect();
    assert_eq!(texts, vec![&br#"{"a":1}"#[..], b"2", br#""x""#]);
    assert_eq!(Raw::parse(b"[]").unwrap().elements().count(), 0);
    assert_eq!(Raw::parse(b"{}").unwrap().elements().count(), 0);
}

#[test]
fn nesting_past_64_levels_is_validated_too() {
    for depth in [1, 63, 64, 65, 200] {
        let deep = format!(r#"{{"a":{}1{}}}"#, r#"[{"k":"#.repeat(depth), "}]".repeat(depth));
        assert!(Raw::parse(deep.as_bytes()).is_ok(), "{depth}");
        let wrong = format!(r#"{{"a":{}1{}}}"#, r#"[{"k":"#.repeat(depth), "]}".repeat(depth));
        assert!(Raw::parse(wrong.as_bytes()).is_err(), "{depth}");
    }
}
