use super::*;

fn counter_source() -> impl FnMut() -> u8 {
    let mut n: u8 = 0;
    move || {
        n = n.wrapping_add(37);
        n
    }
}

#[test]
fn generated_keys_have_the_format_and_a_valid_checksum() {
    let key = new_api_key(counter_source());
    assert_eq!(key.len(), KEY_LEN);
    assert!(key.starts_with("tw_"));
    assert!(checksum_is_valid(&key));
}

#[test]
fn any_single_character_change_breaks_the_checksum() {
    let key = new_api_key(counter_source());
    for i in PREFIX.len()..key.len() {
        let mut bytes = key.clone().into_bytes();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert!(!checksum_is_valid(&changed), "change at {i} not caught");
    }
}

#[test]
fn wrong_length_or_alphabet_is_refused() {
    let key = new_api_key(counter_source());
    assert!(!checksum_is_valid(&key[..key.len() - 1]));
    assert!(!checksum_is_valid(&format!("{key}0")));
    assert!(!checksum_is_valid(&key.replacen("tw_", "tx_", 1)));
    let mut bytes = key.into_bytes();
    bytes[5] = b'-';
    assert!(!checksum_is_valid(&String::from_utf8(bytes).unwrap()));
}

#[test]
fn a_multibyte_character_at_the_checksum_boundary_is_refused_not_a_panic() {
    // 41 bytes with a two-byte character across byte 35, where the checksum starts.
    let key = format!("tw_{}é{}", "a".repeat(31), "b".repeat(5));
    assert_eq!(key.len(), KEY_LEN);
    assert!(!checksum_is_valid(&key));
}

/// The checksum is CRC-32 as zlib (and crc32fast, which computed it before) compute it:
/// keys issued before still check, byte for byte.
#[test]
fn the_checksum_is_zlibs_crc32_and_keys_issued_before_still_check() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414f_a339
    );
    // Made by the crc32fast version of `new_api_key`.
    let issued = "tw_bCnOza3eFqR2d6hItU5g9kLwX8jCnOza2Hh4LM";
    assert_eq!(new_api_key(counter_source()), issued);
    assert!(checksum_is_valid(issued));
}
