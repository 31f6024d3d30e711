use std::borrow::Cow;

use super::*;

#[test]
fn strings_without_escapes_are_borrowed_and_escapes_are_decoded() {
    let node = Node::parse(br#" {"a": "plain", "b": "tab\there \u00e9", "c": [1, -2.5e3, true, null]} "#)
        .unwrap();
    assert!(matches!(node.get("a"), Some(Node::String(Cow::Borrowed("plain")))));
    assert_eq!(node.get("b").and_then(Node::as_str), Some("tab\there é"));
    assert_eq!(
        node.get("c"),
        Some(&Node::Array(vec![
            Node::Number("1".into()),
            Node::Number("-2.5e3".into()),
            Node::Bool(true),
            Node::Null,
        ]))
    );
}

#[test]
fn a_key_repeated_in_one_object_is_refused_with_its_name() {
    assert!(Node::parse(br#"{"a":{"x":1,"y":{"x":2}},"b":[{"x":1},{"x":1}]}"#).is_ok());
    let error = Node::parse(br#"{"a":1,"b":{"c":1,"c":2}}"#).unwrap_err();
    assert!(error.0.starts_with("duplicate field `c`"), "{error}");
    // The same key once escaped: compared as decoded.
    assert!(Node::parse(br#"{"a":1,"\u0061":2}"#).is_err());
    // Large objects switch to a set; a repeat late in one is still found.
    let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    let large = format!("{{{}}}", keys.join(","));
    assert!(Node::parse(large.as_bytes()).is_ok());
    let late = format!("{{{},\"k3\":0}}", keys.join(","));
    assert!(Node::parse(late.as_bytes()).is_err());
    let early = format!("{{\"k39\":0,{}}}", keys.join(","));
    assert!(Node::parse(early.as_bytes()).is_err());
}

#[test]
fn invalid_text_is_refused() {
    for bad in [
        &b""[..],
        b"{",
        b"{\"a\":1,}",
        b"[1,]",
        b"{\"a\" 1}",
        b"01",
        b"1.",
        b"\"\\x\"",
        b"\"\x01\"",
        b"{} {}",
        b"nul",
        b"\"\xff\"",
        b"{\"a\":\"\xc3\"}",
    ] {
        assert!(Node::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    let deep = "[".repeat(100_000);
    assert!(Node::parse(deep.as_bytes()).is_err());
    let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(Node::parse(fine.as_bytes()).is_ok());
}
