use super::*;

#[test]
fn der_integers_are_minimal_and_positive() {
    let mut rs = [0u8; 64];
    rs[31] = 1; // r = 1
    rs[32] = 0x80; // s has its top bit set: a zero byte keeps it positive
    let der = der_signature(&rs);
    assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
    assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
    assert_eq!(der[8], 0x80);
    assert_eq!(der.len(), 2 + 3 + 35);
    // r = 0 stays one zero byte (which the verifier then refuses).
    assert_eq!(&der_signature(&[0u8; 64])[..5], &[0x30, 6, 0x02, 0x01, 0x00]);
}
