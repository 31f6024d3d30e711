use crate::host::HeaderBlock;
use super::*;

fn block(pairs: &[(String, Vec<u8>)]) -> HeaderBlock {
    HeaderBlock::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
}

fn headers(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    let mut all = vec![
        (":method".to_string(), b"POST".to_vec()),
        (":path".to_string(), b"/v1/chat".to_vec()),
    ];
    all.extend(pairs.iter().map(|(n, v)| (n.to_string(), v.to_vec())));
    all
}

/// The credential, owned: the header block it was read from is gone when it is returned.
fn owned(credential: Credential<'_>) -> Credential<'static> {
    Credential {
        value: Cow::Owned(credential.value.into_owned()),
        rewritten_path: credential.rewritten_path,
    }
}

fn extract_from(
    pairs: &[(&str, &[u8])],
    allow_query: bool,
) -> Result<Credential<'static>, Refusal> {
    let headers = block(&headers(pairs));
    let head = RequestHead::parse(&headers.iter().collect::<Vec<_>>())?;
    extract(&head, allow_query).map(owned)
}

fn with_path(
    path: &str,
    pairs: &[(&str, &[u8])],
    allow_query: bool,
) -> Result<Credential<'static>, Refusal> {
    let mut headers = headers(pairs);
    headers[1].1 = path.as_bytes().to_vec();
    let headers = block(&headers);
    let head = RequestHead::parse(&headers.iter().collect::<Vec<_>>())?;
    extract(&head, allow_query).map(owned)
}

#[test]
fn each_supported_header_yields_the_credential() {
    for (name, value) in [
        ("authorization", &b"Bearer tok"[..]),
        ("authorization", &b"bearer   tok "[..]),
        ("x-api-key", &b"tok"[..]),
        ("x-goog-api-key", &b"tok"[..]),
        ("api-key", &b"tok"[..]),
    ] {
        let credential = extract_from(&[(name, value)], false).unwrap();
        assert_eq!(credential.value, "tok", "{name}");
        assert_eq!(credential.rewritten_path, None);
    }
}

#[test]
fn no_credential_or_wrong_scheme_is_missing() {
    assert_eq!(
        extract_from(&[], false).unwrap_err().code,
        ErrorCode::MissingCredential
    );
    let refusal = extract_from(&[("authorization", b"Basic dXNlcjpwYXNz")], false).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::MissingCredential);
    assert!(refusal.message.contains("Bearer"));
    assert_eq!(
        extract_from(&[("x-api-key", b"  ")], false)
            .unwrap_err()
            .code,
        ErrorCode::MissingCredential
    );
}

#[test]
fn two_credentials_or_a_repeated_header_are_ambiguous() {
    let both = extract_from(
        &[("authorization", b"Bearer a"), ("x-api-key", b"b")],
        false,
    );
    assert_eq!(both.unwrap_err().code, ErrorCode::AmbiguousCredential);
    let repeated = extract_from(
        &[
            ("authorization", b"Bearer a"),
            ("authorization", b"Bearer a"),
        ],
        false,
    );
    assert_eq!(repeated.unwrap_err().code, ErrorCode::AmbiguousCredential);
    // Envoy coalesces a repeated Authorization header into one comma-joined value.
    let joined = extract_from(&[("authorization", b"Bearer a,Bearer b")], false);
    assert_eq!(joined.unwrap_err().code, ErrorCode::AmbiguousCredential);
    let joined = extract_from(&[("x-api-key", b"a, b")], false);
    assert_eq!(joined.unwrap_err().code, ErrorCode::AmbiguousCredential);
}

#[test]
fn non_utf8_credential_is_an_invalid_header() {
    let refusal = extract_from(&[("authorization", b"Bearer \xff\xfe")], false).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::InvalidHeader);
    assert_eq!(refusal.code.status(), 400);
}

#[test]
fn non_utf8_unrelated_header_is_ignored() {
    let credential = extract_from(&[("x-note", b"\xff"), ("x-api-key", b"tok")], false).unwrap();
    assert_eq!(credential.value, "tok");
}

#[test]
fn credential_in_query_is_refused_unless_allowed() {
    for path in [
        "/v1/x?key=abc",
        "/v1/x?a=1&api_key=abc",
        "/v1/x?access_token=abc",
        "/v1/x?%6Bey=abc",
    ] {
        let refusal = with_path(path, &[], false).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::TokenInUrl, "{path}");
        assert_eq!(refusal.code.status(), 400);
    }
    assert!(with_path("/v1/x?keys=1&monkey=2", &[("x-api-key", b"tok")], false).is_ok());
}

#[test]
fn allowed_query_credential_is_taken_out_of_the_path() {
    let credential = with_path(
        "/v1beta/models/m:generateContent?alt=sse&key=tw%5Fabc",
        &[],
        true,
    )
    .unwrap();
    assert_eq!(credential.value, "tw_abc");
    assert_eq!(
        credential.rewritten_path.as_deref(),
        Some("/v1beta/models/m:generateContent?alt=sse")
    );
    let only = with_path("/p?key=abc", &[], true).unwrap();
    assert_eq!(only.rewritten_path.as_deref(), Some("/p"));
    let twice = with_path("/p?key=abc&key=def", &[], true).unwrap_err();
    assert_eq!(twice.code, ErrorCode::AmbiguousCredential);
    let plus_header = with_path("/p?key=abc", &[("x-goog-api-key", b"def")], true).unwrap_err();
    assert_eq!(plus_header.code, ErrorCode::AmbiguousCredential);
}

#[test]
fn head_collects_internal_headers_and_content_length() {
    let headers = headers(&[
        ("x-tokenward-cluster", b"evil"),
        ("content-length", b"12"),
        ("anthropic-version", b"x"),
    ]);
    let headers = block(&headers);
    let head = RequestHead::parse(&headers.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(head.internal_headers, vec!["x-tokenward-cluster"]);
    assert_eq!(head.content_length, Some(12));
    assert!(head.has_anthropic_version);
    let bad = block(&headers_with_bad_length());
    assert_eq!(
        RequestHead::parse(&bad.iter().collect::<Vec<_>>()).unwrap_err().code,
        ErrorCode::InvalidHeader
    );
}

fn headers_with_bad_length() -> Vec<(String, Vec<u8>)> {
    headers(&[("content-length", b"lots")])
}

#[test]
fn percent_decoding_keeps_malformed_escapes() {
    assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
    assert_eq!(percent_decode("%4"), "%4");
}

#[test]
fn query_credential_names_are_matched_without_case() {
    for path in ["/v1/x?KEY=abc", "/v1/x?Api_Key=abc", "/v1/x?%4Bey=abc"] {
        assert_eq!(
            with_path(path, &[], false).unwrap_err().code,
            ErrorCode::TokenInUrl,
            "{path}"
        );
    }
}

#[test]
fn paths_must_be_normalized() {
    for path in [
        "/v1/embeddings/../chat/completions",
        "/v1beta/models/gemini-flash:x/../gemini-ultra:generateContent",
        "/v1/./models",
        "/v1/chat%2Fcompletions",
        "/v1/%2e%2e/models",
        "v1/models",
    ] {
        let refusal = with_path(path, &[("x-api-key", b"tok")], false).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidHeader, "{path}");
    }
    assert!(
        with_path("/v1/models?q=a/../b", &[("x-api-key", b"tok")], false).is_ok(),
        "the query is not the path"
    );
}

#[test]
fn regression_query_credentials_are_found_in_every_encoding_of_name_and_equals() {
    for path in [
        "/v1/x?key%3Dabcdefgh",
        "/v1/x?key%3dabcdefgh",
        "/v1/x?%6B%65%79%3Dabcdefgh",
        "/v1/x?key%253Dabcdefgh",
        "/v1/x?%256Bey=abcdefgh",
        "/v1/x?a=1;key=abcdefgh",
        "/v1/x?%20key%20=abcdefgh",
        "/v1/x?key",
    ] {
        let refusal = with_path(path, &[], false).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::TokenInUrl, "{path}");
    }
    let taken = with_path("/v1/x?alt=sse&key%3Dtw_abc", &[], true).unwrap();
    assert_eq!(taken.value, "tw_abc");
    assert_eq!(taken.rewritten_path.as_deref(), Some("/v1/x?alt=sse"));
}

#[test]
fn copies_of_a_credential_are_found_as_sent_or_percent_encoded() {
    let token = "eyJhbGciOi.payload.signature";
    assert!(contains_credential(
        format!("session={token}; theme=dark").as_bytes(),
        token
    ));
    assert!(contains_credential(
        b"x=eyJhbGciOi%2Epayload.signature",
        token
    ));
    assert!(!contains_credential(b"session=other; theme=dark", token));
    assert!(
        !contains_credential(b"abc", "abc"),
        "too short to search for"
    );
}

#[test]
fn regression_an_encoded_copy_is_found_in_a_header_that_is_not_utf8() {
    let token = "eyJhbGciOi.payload.signature";
    let encoded: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut cookie = b"a=\xff; t=".to_vec();
    cookie.extend_from_slice(encoded.as_bytes());
    assert!(contains_credential(&cookie, token));
}

#[test]
fn query_names_are_decoded_up_to_three_times() {
    let refusal = with_path("/v1/x?%25256Bey=abcdefgh", &[], false).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TokenInUrl);
}

#[test]
fn the_credential_headers_present_are_named_once_each_in_their_order() {
    let headers = block(&headers(&[
        ("x-api-key", b"a"),
        ("authorization", b"Bearer b"),
        ("x-api-key", b"c"),
        ("api-key", b"d"),
    ]));
    let read: Vec<(&str, &[u8])> = headers.iter().collect();
    let head = RequestHead::parse(&read).unwrap();
    let names: Vec<&str> = head.credential_header_names().collect();
    assert_eq!(names, ["authorization", "x-api-key", "api-key"]);
    assert_eq!(
        extract(&head, false).unwrap_err().code,
        ErrorCode::AmbiguousCredential
    );
}
