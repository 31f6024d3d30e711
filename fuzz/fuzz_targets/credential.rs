//! Credential extraction: `RequestHead::parse` over a header block, then `credential::extract`
//! with and without permission to take the credential from the query. The first byte chooses
//! how the rest is read: as the proxy-wasm serialized header block itself (malformed blocks
//! included), or as `name: value` lines (raw bytes, non-UTF-8 values included), which is
//! what the seed corpus and the dictionary speak.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_filter::credential::{extract, RequestHead};
use tokenward_filter::host::HeaderBlock;

/// `name: value` lines; a pseudo-header's name keeps its leading colon.
fn from_lines(text: &[u8]) -> HeaderBlock {
    let pairs: Vec<(&str, &[u8])> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let from = usize::from(line.first() == Some(&b':'));
            let colon = from + line.get(from..)?.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(line.get(..colon)?).ok()?;
            let value = line.get(colon + 1..)?;
            Some((name, value.strip_prefix(b" ").unwrap_or(value)))
        })
        .collect();
    HeaderBlock::from_pairs(pairs)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let block = if mode & 1 == 0 {
        from_lines(rest)
    } else {
        HeaderBlock::from_serialized(rest.to_vec())
    };
    // What the block yields, it yields again after a round trip through serialization.
    let pairs: Vec<(&str, &[u8])> = block.iter().collect();
    let again = HeaderBlock::from_pairs(pairs.clone());
    assert!(
        again.iter().eq(pairs.iter().copied()),
        "header block round trip"
    );

    let read: Vec<(&str, &[u8])> = block.iter().collect();
    let Ok(head) = RequestHead::parse(&read) else {
        return;
    };
    let strict = extract(&head, false);
    let lenient = extract(&head, true);
    if let Ok(credential) = &strict {
        // Permission to read the query never changes what the headers alone decide.
        assert_eq!(
            Ok(credential),
            lenient.as_ref(),
            "allow_query changed a header credential"
        );
        assert!(
            credential.rewritten_path.is_none(),
            "query credential without permission"
        );
    }
    let Ok(credential) = lenient else {
        return;
    };
    assert!(!credential.value.is_empty(), "empty credential accepted");
    match &credential.rewritten_path {
        None => {
            // From a header: one value, trimmed, no comma (a joined repeated header).
            assert!(
                !credential.value.contains(','),
                "comma in a header credential"
            );
            assert_eq!(
                credential.value.trim(),
                credential.value,
                "untrimmed credential"
            );
            let names: Vec<&str> = head.credential_header_names().collect();
            assert_eq!(names.len(), 1, "accepted with {names:?} credential headers");
        }
        Some(path) => {
            // From the query: no credential header was sent, and the forwarded path keeps
            // no credential parameter and the same path before the query.
            assert_eq!(
                head.credential_header_names().count(),
                0,
                "two credentials accepted"
            );
            let base = |p: &str| p.split('?').next().map(str::to_string);
            assert_eq!(base(path), base(head.path), "rewrite changed the path");
            let forwarded = [(":path", path.as_bytes())];
            if let Ok(forwarded) = RequestHead::parse(&forwarded) {
                assert!(
                    extract(&forwarded, true).is_err(),
                    "credential left in {path:?}"
                );
            }
        }
    }
});
