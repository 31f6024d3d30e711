use super::*;
use crate::auth::token::tests::identity;

fn hash(n: u8) -> CredentialHash {
    [n; 32]
}

#[test]
fn entry_is_served_until_it_expires() {
    let mut cache = VerifiedTokenCache::new(4);
    cache.insert(hash(1), std::sync::Arc::new(identity("alice")), 100);
    assert_eq!(cache.get(&hash(1), 100).unwrap().subject, "alice");
    assert!(cache.get(&hash(1), 101).is_none());
    assert!(cache.get(&hash(2), 50).is_none());
}

#[test]
fn oldest_entry_is_evicted_when_full() {
    let mut cache = VerifiedTokenCache::new(2);
    cache.insert(hash(1), std::sync::Arc::new(identity("a")), 100);
    cache.insert(hash(2), std::sync::Arc::new(identity("b")), 100);
    cache.insert(hash(3), std::sync::Arc::new(identity("c")), 100);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&hash(1), 0).is_none());
    assert!(cache.get(&hash(2), 0).is_some());
    assert!(cache.get(&hash(3), 0).is_some());
}

#[test]
fn reinserting_does_not_grow_the_cache() {
    let mut cache = VerifiedTokenCache::new(2);
    for _ in 0..10 {
        cache.insert(hash(1), std::sync::Arc::new(identity("a")), 100);
    }
    cache.insert(hash(2), std::sync::Arc::new(identity("b")), 100);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.order.len(), 2);
}

#[test]
fn zero_size_disables_caching() {
    let mut cache = VerifiedTokenCache::new(0);
    cache.insert(hash(1), std::sync::Arc::new(identity("a")), 100);
    assert!(cache.is_empty());
}

#[test]
fn equal_scope_lists_are_shared_and_the_table_stays_bounded() {
    let mut cache = VerifiedTokenCache::new(10);
    let list = || vec!["chat".to_string(), "models".to_string()];
    let first = cache.intern(list());
    let second = cache.intern(list());
    assert!(Arc::ptr_eq(&first, &second), "one copy for every identity with the list");
    for i in 0..(MAX_INTERNED * 2) {
        cache.intern(vec![format!("scope-{i}")]);
    }
    assert!(cache.lists.len() <= MAX_INTERNED);
    assert_eq!(*cache.intern(list()), *first, "a list is the same list after a reset");
}
