//! The opaque API key format: `tw_` + 32 base62 characters (about 190 random bits) + a
//! 6-character base62 CRC32 of everything before it. The checksum lets the filter refuse a
//! mistyped or truncated key, and secret scanners recognise a leaked one, without a lookup.

use crate::config::ApiKeyEntry;

pub const PREFIX: &str = "tw_";
const BODY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Does this credential claim to be an API key (as opposed to a JWT)?
pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Checks length, alphabet and checksum. Cheap; runs before any lookup.
pub fn checksum_is_valid(key: &str) -> bool {
    // ASCII first: `split_at` below must land on a character boundary.
    if key.len() != KEY_LEN || !key.is_ascii() || !key.starts_with(PREFIX) {
        return false;
    }
    let (head, checksum) = key.split_at(PREFIX.len() + BODY_LEN);
    if !head[PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    encode_checksum(crc32(head.as_bytes())).as_bytes() == checksum.as_bytes()
}

/// Makes a new key from a source of uniformly random bytes (the caller's CSPRNG).
pub fn new_api_key(mut random_byte: impl FnMut() -> u8) -> String {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(PREFIX);
    while key.len() < PREFIX.len() + BODY_LEN {
        let byte = random_byte();
        // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
        if byte < 248 {
            key.push(BASE62[usize::from(byte % 62)] as char);
        }
    }
    let checksum = encode_checksum(crc32(key.as_bytes()));
    key.push_str(&checksum);
    key
}

/// The configuration entry for `key`: the key itself is not in it, only its SHA-256.
pub fn config_entry(
    key: &str,
    id: &str,
    subject: &str,
    scopes: &[&str],
    models: &[&str],
) -> ApiKeyEntry {
    let hash = crate::identity::credential_hash(key);
    ApiKeyEntry {
        id: id.to_string(),
        sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
        subject: subject.to_string(),
        tenant: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        models: models.iter().map(|s| s.to_string()).collect(),
        plan: None,
        expires_at: None,
    }
}

/// CRC-32 (IEEE 802.3, reflected: zlib's), a byte at a time through a table built at
/// compile time. A key is 35 bytes; crc32fast's sixteen tables (16 KB) were a twenty-fifth of
/// the Wasm module for a few nanoseconds per key.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &byte| {
        TABLE[usize::from(crc as u8 ^ byte)] ^ (crc >> 8)
    })
}

fn encode_checksum(mut value: u32) -> String {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests;
