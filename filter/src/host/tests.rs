use super::HeaderBlock;

#[test]
fn serialized_block_round_trips_and_truncation_is_safe() {
    let pairs: [(&str, &[u8]); 3] = [
        (":path", b"/v1/x"),
        ("authorization", b"Bearer \xff"),
        ("empty", b""),
    ];
    let block = HeaderBlock::from_pairs(pairs);
    assert_eq!(block.iter().collect::<Vec<_>>(), pairs.to_vec());
    for cut in 0..block.bytes.len() {
        let truncated = HeaderBlock::from_serialized(block.bytes[..cut].to_vec());
        assert!(truncated.iter().count() <= 3);
    }
    assert_eq!(
        HeaderBlock::from_serialized(vec![255, 255, 255, 255])
            .iter()
            .count(),
        0
    );
}
