use std::collections::{HashMap, VecDeque};

use super::*;
use crate::auth::token::tests::identity;

fn hash(n: u8) -> CredentialHash {
    [n; 32]
}

/// A hash whose probe starts at `home` in any table of more than `home` positions, told
/// apart from the others with the same home by `tail` (its last byte).
fn colliding(home: u8, tail: u8) -> CredentialHash {
    tagged(home, 0, tail)
}

/// As `colliding`, with `tag` as the byte the index keeps beside the slot.
fn tagged(home: u8, tag: u8, tail: u8) -> CredentialHash {
    let mut hash = [0; 32];
    hash[0] = home;
    hash[8] = tag;
    hash[31] = tail;
    hash
}

fn put(cache: &mut VerifiedTokenCache, hash: CredentialHash, subject: &str) {
    cache.insert(hash, Arc::new(identity(subject)), 100);
}

fn subject(cache: &VerifiedTokenCache, hash: &CredentialHash) -> Option<String> {
    cache.get(hash, 0).map(|identity| identity.subject().to_string())
}

#[test]
fn entry_is_served_until_it_expires() {
    let mut cache = VerifiedTokenCache::new(4);
    put(&mut cache, hash(1), "alice");
    assert_eq!(cache.get(&hash(1), 100).unwrap().subject(), "alice");
    assert!(cache.get(&hash(1), 101).is_none());
    assert!(cache.get(&hash(2), 50).is_none());
}

#[test]
fn oldest_entry_is_evicted_when_full() {
    let mut cache = VerifiedTokenCache::new(2);
    put(&mut cache, hash(1), "a");
    put(&mut cache, hash(2), "b");
    put(&mut cache, hash(3), "c");
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&hash(1), 0).is_none());
    assert!(cache.get(&hash(2), 0).is_some());
    assert!(cache.get(&hash(3), 0).is_some());
}

#[test]
fn eviction_goes_round_the_ring_in_insertion_order() {
    let mut cache = VerifiedTokenCache::new(3);
    for n in 1..=3 {
        put(&mut cache, hash(n), &n.to_string());
    }
    // Three times round: each new entry pushes out the oldest, never a younger one.
    for n in 4..=12u8 {
        put(&mut cache, hash(n), &n.to_string());
        assert_eq!(cache.len(), 3);
        assert_eq!(subject(&cache, &hash(n - 3)), None, "{} evicted", n - 3);
        for kept in n - 2..=n {
            assert_eq!(subject(&cache, &hash(kept)), Some(kept.to_string()));
        }
    }
}

#[test]
fn reinserting_replaces_the_entry_in_place() {
    let mut cache = VerifiedTokenCache::new(2);
    for _ in 0..10 {
        put(&mut cache, hash(1), "a");
    }
    cache.insert(hash(1), Arc::new(identity("a2")), 200);
    put(&mut cache, hash(2), "b");
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&hash(1), 200).unwrap().subject(), "a2");
    // It kept its place in the order: the first out when the cache is full.
    put(&mut cache, hash(3), "c");
    assert_eq!(subject(&cache, &hash(1)), None);
    assert_eq!(subject(&cache, &hash(2)), Some("b".into()));
}

#[test]
fn a_cached_identity_comes_back_with_its_subject_and_jti() {
    let long = "u".repeat(1_000);
    let minted = "0123456789abcdef0123456789abcdef";
    let callers = [
        ("alice", Some(minted)),
        (long.as_str(), Some("jti-1")),
        ("bob", None),
        ("carol", Some("0123456789ABCDEF0123456789ABCDEF")),
    ];
    let mut cache = VerifiedTokenCache::new(callers.len());
    for (n, &(subject, jti)) in (0u8..).zip(&callers) {
        let identity = Identity::jwt(subject, jti, None, Default::default(), Some(100));
        cache.insert(hash(n), Arc::new(identity), 100);
    }
    for (n, &(subject, jti)) in (0u8..).zip(&callers) {
        let identity = cache.get(&hash(n), 0).unwrap();
        assert_eq!(identity.subject(), subject);
        assert_eq!(identity.jti().map(|j| j.to_string()).as_deref(), jti);
    }
}

#[test]
fn zero_size_disables_caching() {
    let mut cache = VerifiedTokenCache::new(0);
    put(&mut cache, hash(1), "a");
    assert!(cache.is_empty());
    assert!(cache.get(&hash(1), 0).is_none());
    assert_eq!(cache.index.positions(), 0, "nothing allocated");
}

#[test]
fn hashes_equal_in_their_first_bytes_stay_apart() {
    let mut cache = VerifiedTokenCache::new(8);
    put(&mut cache, colliding(3, 1), "one");
    put(&mut cache, colliding(3, 2), "two");
    assert_eq!(subject(&cache, &colliding(3, 1)), Some("one".into()));
    assert_eq!(subject(&cache, &colliding(3, 2)), Some("two".into()));
    assert_eq!(subject(&cache, &colliding(3, 3)), None);
}

#[test]
fn a_tag_that_agrees_is_not_a_match_and_one_that_differs_is_passed_over() {
    let mut cache = VerifiedTokenCache::new(8);
    // One home; tags 1, 1, 2: the second differs from the first only past the tag.
    let (a, b, c) = (tagged(5, 1, 1), tagged(5, 1, 2), tagged(5, 2, 1));
    put(&mut cache, a, "a");
    put(&mut cache, c, "c");
    assert_eq!(subject(&cache, &b), None);
    put(&mut cache, b, "b");
    for (h, name) in [(a, "a"), (b, "b"), (c, "c")] {
        assert_eq!(subject(&cache, &h), Some(name.into()), "{name}");
    }
    assert_eq!(subject(&cache, &tagged(5, 2, 2)), None);
    assert_eq!(subject(&cache, &tagged(5, 3, 1)), None);
}

#[test]
fn eviction_keeps_colliding_entries_findable_across_the_tables_end() {
    // Eight positions for four entries: homes 6 and 7 fill 6, 7, 0, 1, wrapping round.
    let mut cache = VerifiedTokenCache::new(4);
    let (a, b, c, d) = (
        colliding(6, 1),
        colliding(6, 2),
        colliding(7, 3),
        colliding(6, 4),
    );
    for (h, name) in [(a, "a"), (b, "b"), (c, "c"), (d, "d")] {
        put(&mut cache, h, name);
    }
    assert_eq!(cache.index.positions(), 8);
    // `a` leaves from the head of the run: the rest must shift back over the wrap, each
    // still reachable from its home.
    let e = colliding(1, 5);
    put(&mut cache, e, "e");
    assert_eq!(subject(&cache, &a), None);
    for (h, name) in [(b, "b"), (c, "c"), (d, "d"), (e, "e")] {
        assert_eq!(subject(&cache, &h), Some(name.into()), "{name}");
    }
    // And from the middle of a run (`b` is the oldest now).
    let f = colliding(7, 6);
    put(&mut cache, f, "f");
    assert_eq!(subject(&cache, &b), None);
    for (h, name) in [(c, "c"), (d, "d"), (e, "e"), (f, "f")] {
        assert_eq!(subject(&cache, &h), Some(name.into()), "{name}");
    }
}

#[test]
fn storage_grows_in_chunks_no_larger_than_the_cache() {
    let mut cache = VerifiedTokenCache::new(ring::CHUNK + 100);
    assert!(cache.entries.chunk_capacities().is_empty(), "nothing allocated up front");
    put(&mut cache, hash(1), "a");
    assert_eq!(cache.entries.chunk_capacities(), [ring::CHUNK]);
    for n in 0..(ring::CHUNK as u32 + 200) {
        let mut h = [0; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h[31] = 0xaa;
        put(&mut cache, h, "many");
    }
    assert_eq!(cache.len(), ring::CHUNK + 100);
    assert_eq!(cache.entries.chunk_capacities(), [ring::CHUNK, 100]);
    // The index stays at most seven eighths full, and at least seven sixteenths.
    assert!(!index::too_full(cache.len(), cache.index.positions()));
    assert!(index::too_full(cache.len(), cache.index.positions() / 2));
    // The last CHUNK + 100 of them, in their order.
    for n in 0..(ring::CHUNK as u32 + 200) {
        let mut h = [0; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h[31] = 0xaa;
        assert_eq!(cache.get(&h, 0).is_some(), n >= 100, "{n}");
    }
}

/// The behaviour the cache had as a `HashMap` and a `VecDeque`, as a model to hold it to.
#[derive(Default)]
struct Model {
    max: usize,
    entries: HashMap<CredentialHash, (String, u64)>,
    order: VecDeque<CredentialHash>,
}

impl Model {
    fn insert(&mut self, hash: CredentialHash, subject: String, valid_until: u64) {
        if self.max == 0 {
            return;
        }
        if let Some(entry) = self.entries.get_mut(&hash) {
            *entry = (subject, valid_until);
            return;
        }
        if self.entries.len() >= self.max {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(hash, (subject, valid_until));
        self.order.push_back(hash);
    }

    fn get(&self, hash: &CredentialHash, now: u64) -> Option<String> {
        let (subject, valid_until) = self.entries.get(hash)?;
        (now <= *valid_until).then(|| subject.clone())
    }
}

#[test]
fn behaves_like_a_map_with_first_in_first_out_eviction_under_heavy_collisions() {
    // A fixed pseudo-random walk over 128 hashes whose probes all start within eight
    // positions, half of them with the same tag as another: long runs, wrapping, removals
    // from their heads, middles and tails.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for max in [0, 1, 2, 5, 13, 40, 100] {
        let mut cache = VerifiedTokenCache::new(max);
        let mut model = Model {
            max,
            ..Model::default()
        };
        for step in 0..5_000u64 {
            let r = next();
            let h = tagged((r % 8) as u8 * 16 + 7, (r >> 44) as u8 % 2, (r >> 8) as u8 % 8);
            let now = (r >> 16) % 10;
            if (r >> 40) & 1 == 0 {
                let valid_until = (r >> 20) % 10;
                let name = format!("s{step}");
                cache.insert(h, Arc::new(identity(&name)), valid_until);
                model.insert(h, name, valid_until);
                assert_eq!(cache.len(), model.entries.len());
            }
            let got = cache.get(&h, now).map(|i| i.subject().to_string());
            assert_eq!(got, model.get(&h, now), "max {max}, step {step}");
        }
        for tail in 0..8 {
            for home in 0..8u8 {
                for tag in 0..2 {
                    let h = tagged(home * 16 + 7, tag, tail);
                    let got = cache.get(&h, 0).map(|i| i.subject().to_string());
                    assert_eq!(got, model.get(&h, 0), "max {max}, final");
                }
            }
        }
    }
}

#[test]
fn equal_grants_are_shared_and_the_table_stays_bounded() {
    let mut cache = VerifiedTokenCache::new(10);
    let grants = || Grants {
        tenant: Some("acme".into()),
        scopes: vec!["chat".to_string(), "models".to_string()],
        models: Some(vec!["gpt-*".into()]),
        plan: None,
    };
    let first = cache.intern_grants(grants());
    let second = cache.intern_grants(grants());
    assert!(Arc::ptr_eq(&first, &second), "one copy for every identity with the grants");
    let other_plan = cache.intern_grants(Grants {
        plan: Some("gold".into()),
        ..grants()
    });
    assert!(!Arc::ptr_eq(&first, &other_plan));
    assert_eq!(other_plan.plan.as_deref(), Some("gold"));
    for i in 0..(MAX_INTERNED * 2) {
        cache.intern_grants(Grants {
            scopes: vec![format!("scope-{i}")],
            ..Grants::default()
        });
    }
    assert!(cache.grants.shared.len() <= MAX_INTERNED);
    assert_eq!(*cache.intern_grants(grants()), *first, "the same grants after a reset");
}

#[test]
fn equal_key_ids_are_shared_and_the_table_stays_bounded() {
    let mut cache = VerifiedTokenCache::new(10);
    let first = cache.intern_key_id("alice");
    let second = cache.intern_key_id("alice");
    assert!(Arc::ptr_eq(&first, &second));
    for i in 0..(MAX_INTERNED * 2) {
        cache.intern_key_id(&format!("key-{i}"));
    }
    assert!(cache.key_ids.shared.len() <= MAX_INTERNED);
    assert_eq!(&*cache.intern_key_id("alice"), "alice");
}
