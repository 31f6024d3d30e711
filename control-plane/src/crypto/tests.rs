use super::*;

#[test]
fn a_sealed_secret_opens_only_with_its_key_and_context() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal("signing-key:k1", b"secret bytes").unwrap();
    assert!(
        !sealed.windows(12).any(|w| w == b"secret bytes"),
        "not in clear"
    );
    assert_eq!(
        key.open("signing-key:k1", &sealed).unwrap(),
        b"secret bytes"
    );
    assert_eq!(
        key.open("signing-key:k2", &sealed),
        Err(CryptoError::Unseal),
        "moved to another row"
    );
    let other = MasterKey::generate().unwrap();
    assert_eq!(
        other.open("signing-key:k1", &sealed),
        Err(CryptoError::Unseal)
    );
    let mut damaged = sealed.clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert_eq!(
        key.open("signing-key:k1", &damaged),
        Err(CryptoError::Unseal)
    );
    assert_ne!(
        key.seal("c", b"x").unwrap(),
        key.seal("c", b"x").unwrap(),
        "fresh nonce each time"
    );
}

#[test]
fn master_keys_are_64_hex_characters() {
    let key = MasterKey::generate().unwrap();
    let hex = key.to_hex();
    assert_eq!(
        MasterKey::from_hex(&format!("{hex}\n")).unwrap().to_hex(),
        hex
    );
    assert_eq!(
        MasterKey::from_hex("abcd").unwrap_err(),
        CryptoError::BadMasterKey
    );
    assert_eq!(
        MasterKey::from_hex(&"zz".repeat(32)).unwrap_err(),
        CryptoError::BadMasterKey
    );
    assert_eq!(format!("{key:?}"), "MasterKey(…)", "never printed");
}
