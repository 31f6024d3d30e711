use super::*;

fn valid(text: &str) -> bool {
    Object::document(text.as_bytes()).is_ok()
}

#[test]
fn documents_that_serde_json_accepts_are_accepted_and_the_rest_refused() {
    let cases = [
        r#"{}"#,
        r#" {"a" : 1 , "b":[true,false,null,{"c":"d"}], "e": -0.5e+10 } "#,
        r#"{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
        r#"{"n":[0,-0,1.0,1e5,1E-5,12345678901234567890123]}"#,
        "{\"é\":\"ü\"}",
        r#"{"a":{},"b":[],"c":[[]],"d":[{}]}"#,
        r#"{"a":1,"a":2}"#,
        "{\"a\":\"\u{7f}\"}",
        "",
        "[]",
        r#"{"a":1}x"#,
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":1e}"#,
        r#"{"a":+1}"#,
        r#"{"a":tru}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":"open}"#,
        r#"{"a":[1 2]}"#,
        r#"{"a":{"b":1]}"#,
        r#"{"a":[}"#,
        r#"{"#,
        r#"{"a":NaN}"#,
    ];
    for case in cases {
        let serde_ok = serde_json::from_str::<serde_json::Value>(case).is_ok_and(|v| v.is_object());
        assert_eq!(valid(case), serde_ok, "{case:?}");
    }
    assert!(Object::document(b"{\"a\":\"\xff\"}").is_err());
}

#[test]
fn any_depth_is_read_without_recursion() {
    let depth = 200_000;
    let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let object = Object::document(deep.as_bytes()).unwrap();
    assert_eq!(object.members[0].key, "a");
    assert_eq!(object.members[0].value.len(), 2 * depth + 1);
    let unbalanced = format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth - 1));
    assert!(Object::document(unbalanced.as_bytes()).is_err());
    let objects = format!(
        r#"{{"a":{}1{}}}"#,
        r#"{"k":"#.repeat(depth),
        "}".repeat(depth)
    );
    assert!(Object::document(objects.as_bytes()).is_ok());
}

#[test]
fn members_have_decoded_keys_and_value_spans() {
    let text = r#"{ "mod\u0065l" : "gpt-4o", "n":[1, {"x":2}] ,"t":true}"#;
    let object = Object::document(text.as_bytes()).unwrap();
    let spans: Vec<(&str, &str, Kind)> = object
        .members
        .iter()
        .map(|m| (m.key.as_str(), &text[m.value.clone()], m.kind))
        .collect();
    assert_eq!(
        spans,
        vec![
            ("model", r#""gpt-4o""#, Kind::String),
            ("n", r#"[1, {"x":2}]"#, Kind::Array),
            ("t", "true", Kind::Bool(true)),
        ]
    );
    assert_eq!(object.span, 0..text.len());
    assert!(object.get("model").unwrap().is_some());
    let twice = Object::document(br#"{"a":1,"a":2}"#).unwrap();
    assert!(twice.get("a").is_err());
}

#[test]
fn strings_decode_escapes_and_refuse_lone_surrogates() {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        decode_string(bytes, 0..bytes.len())
    };
    assert_eq!(decode(r#""a\"b\\c\/\n""#).unwrap(), "a\"b\\c/\n");
    assert_eq!(decode(r#""\u00e9\ud83d\ude00""#).unwrap(), "é😀");
    assert!(decode(r#""\ud83d""#).is_err());
    assert!(decode(r#""\ud83dx""#).is_err());
    assert!(decode(r#""\ude00""#).is_err());
}

#[test]
fn splices_replace_and_insert_in_place() {
    let text = br#"{"a":1,"b":2}"#;
    let mut splice = Splice::default();
    splice.replace(5..6, "10".into());
    splice.insert(12, r#","c":3"#.into());
    splice.insert(12, r#","d":4"#.into());
    assert_eq!(
        splice.apply(text),
        br#"{"a":10,"b":2,"c":3,"d":4}"#.to_vec()
    );
}
