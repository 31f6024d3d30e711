use super::*;

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let every_ascii: String = (0u8..0x80).map(char::from).collect();
    for text in [
        "",
        "plain",
        every_ascii.as_str(),
        "quote \" backslash \\ slash / tab \t",
        "é 😀 \u{2028} \u{7f} \u{0}",
    ] {
        assert_eq!(to_string(text), serde_json::to_string(text).unwrap(), "{text:?}");
    }
}

#[test]
fn numbers_options_lists_and_maps_are_written_as_serde_json_writes_them() {
    for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
        assert_eq!(to_string(&n), serde_json::to_string(&n).unwrap());
    }
    assert_eq!(to_string(&u32::MAX), serde_json::to_string(&u32::MAX).unwrap());
    assert_eq!(to_string(&500u16), "500");
    assert_eq!(to_string(&Some(true)), "true");
    assert_eq!(to_string(&None::<bool>), "null");
    let list = vec![String::from("a"), String::from("b\"")];
    assert_eq!(to_string(&list), serde_json::to_string(&list).unwrap());
    assert_eq!(to_string(&Vec::<u64>::new()), "[]");
    let map: HashMap<String, u64> = [("x".to_string(), 1), ("y\n".to_string(), 2)].into();
    assert_eq!(to_string(&map), serde_json::to_string(&map).unwrap());
    assert_eq!(to_string(&HashMap::<String, u64>::new()), "{}");
}

#[test]
fn objects_have_their_members_in_order() {
    let mut out = String::new();
    object(&mut out, |m| {
        m.field("a", &1u64).field("b", &"x");
    });
    object(&mut out, |_| {});
    assert_eq!(out, r#"{"a":1,"b":"x"}{}"#);
}
