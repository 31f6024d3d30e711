//! Two replicas changing the same database at the same moment end in one consistent state:
//! each test runs two control planes, each over a store of its own on one database (two
//! `tokenward` processes on one SQLite file; two replicas on one Postgres), racing.

use std::sync::{Arc, Barrier};

use super::*;
use crate::store::{PostgresStore, SqliteStore};
use crate::testing::TestDatabase;

const NOW: u64 = 1_800_000_000;

/// Two handles on one database, as two replicas have, initialised, sharing a master key.
struct Replicas {
    a: ControlPlane<dyn Store>,
    b: ControlPlane<dyn Store>,
    /// Keeps the database (a Postgres one, or the SQLite file's directory) until dropped.
    _keep: Box<dyn std::any::Any>,
    /// The raw positions of the routes, to check their order has no ties.
    positions: Box<dyn Fn() -> Vec<i64>>,
}

fn planes(
    a: Box<dyn Store>,
    b: Box<dyn Store>,
) -> (ControlPlane<dyn Store>, ControlPlane<dyn Store>) {
    let master = MasterKey::generate().unwrap();
    let hex = master.to_hex();
    let a = ControlPlane::<dyn Store>::new(Arc::<dyn Store>::from(a), master, "replica-a");
    let b = ControlPlane::<dyn Store>::new(
        Arc::<dyn Store>::from(b),
        MasterKey::from_hex(&hex).unwrap(),
        "replica-b",
    );
    a.init(
        &InitSettings {
            issuer: "https://cp.test".into(),
            audiences: vec!["gateway".into()],
            alg: Alg::EdDSA,
        },
        NOW,
    )
    .unwrap();
    a.put_provider(
        crate::testing::openai_provider(),
        ProviderSecret::Env("OPENAI_API_KEY".into()),
        NOW,
    )
    .unwrap();
    (a, b)
}

fn on_sqlite() -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenward.db");
    let (a, b) = planes(
        Box::new(SqliteStore::open(&path).unwrap()),
        Box::new(SqliteStore::open(&path).unwrap()),
    );
    Replicas {
        a,
        b,
        positions: Box::new(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut statement = conn
                .prepare("SELECT position FROM routes ORDER BY position")
                .unwrap();
            let rows = statement.query_map([], |row| row.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        }),
        _keep: Box::new(dir),
    }
}

fn on_postgres() -> Replicas {
    let db = TestDatabase::create();
    let (a, b) = planes(
        Box::new(PostgresStore::connect(&db.url, None).unwrap()),
        Box::new(PostgresStore::connect(&db.url, None).unwrap()),
    );
    let url = db.url.clone();
    Replicas {
        a,
        b,
        positions: Box::new(move || {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            client
                .query("SELECT position FROM routes ORDER BY position", &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect()
        }),
        _keep: Box::new(db),
    }
}

/// Runs `each(plane, round)` `rounds` times on both replicas at once, each round started
/// together.
fn race<T: Send>(
    replicas: &Replicas,
    rounds: u64,
    each: impl Fn(&ControlPlane<dyn Store>, u64) -> T + Sync,
) -> (Vec<T>, Vec<T>) {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let run = |plane: &'static str| {
            let (barrier, each) = (&barrier, &each);
            let plane = if plane == "a" {
                &replicas.a
            } else {
                &replicas.b
            };
            move || {
                (0..rounds)
                    .map(|round| {
                        barrier.wait();
                        each(plane, round)
                    })
                    .collect::<Vec<T>>()
            }
        };
        let a = s.spawn(run("a"));
        let b = s.spawn(run("b"));
        (a.join().unwrap(), b.join().unwrap())
    })
}

fn rotating_at_once_leaves_one_signing_key_in_charge(replicas: Replicas) {
    race(&replicas, 8, |plane, round| {
        plane
            .rotate_key(Alg::EdDSA, Some(0), NOW + 1 + round)
            .unwrap()
    });
    let keys = replicas.a.keys().unwrap();
    assert_eq!(keys.len(), 17, "the first key and 16 rotations");
    let in_charge: Vec<&SigningKeyRecord> =
        keys.iter().filter(|k| k.retired_at.is_none()).collect();
    assert_eq!(in_charge.len(), 1, "one key never retired: {keys:#?}");
    // Every other key retired no later than the one in charge began to sign.
    for key in keys.iter().filter(|k| k.kid != in_charge[0].kid) {
        assert!(
            key.retired_at.unwrap() <= in_charge[0].activate_at,
            "{key:?}"
        );
    }
    replicas
        .b
        .mint_token(
            &TokenRequest {
                subject: "alice".into(),
                ..TokenRequest::default()
            },
            NOW + 100,
        )
        .expect("a key signs");
}

fn the_last_two_admin_keys_revoked_at_once_leave_one(replicas: Replicas) {
    let admin = |plane: &ControlPlane<dyn Store>| {
        plane
            .create_api_key(
                &ApiKeyRequest {
                    subject: "ops".into(),
                    scopes: vec![SCOPE_ADMIN_READ.into(), SCOPE_ADMIN_WRITE.into()],
                    ..ApiKeyRequest::default()
                },
                NOW,
            )
            .unwrap()
            .id
    };
    // The admin key `init` made goes; two remain, and each replica revokes one.
    let first = replicas.a.store().api_keys().unwrap()[0].id.clone();
    let ids = [admin(&replicas.a), admin(&replicas.b)];
    replicas.a.revoke(&Revocation::ApiKey(first), NOW).unwrap();
    let (a, b) = race(&replicas, 1, |plane, _| {
        let mine = if plane.actor == "replica-a" {
            &ids[0]
        } else {
            &ids[1]
        };
        plane.revoke(&Revocation::ApiKey(mine.clone()), NOW + 1)
    });
    let refused = [&a[0], &b[0]]
        .iter()
        .filter(|r| matches!(r, Err(PlaneError::InUse(_))))
        .count();
    assert_eq!(
        refused, 1,
        "exactly one revocation was refused: {a:?} {b:?}"
    );
    let in_force = replicas
        .a
        .store()
        .api_keys()
        .unwrap()
        .into_iter()
        .filter(|k| k.in_force(NOW + 2))
        .count();
    assert_eq!(in_force, 1, "one admin key is left");
}

fn routes_added_at_once_each_get_a_place_of_their_own(replicas: Replicas) {
    let route = |name: String| RouteConfig {
        provider: Some("openai".into()),
        ..tokenward_filter::testing::route(&name, "/v1")
    };
    race(&replicas, 10, |plane, round| {
        plane
            .put_route(route(format!("{}-{round}", plane.actor)), NOW)
            .unwrap();
        // And the same route from both at once: one entry, in one place.
        plane.put_route(route("shared".into()), NOW).unwrap();
    });
    let names: Vec<String> = replicas
        .b
        .store()
        .routes()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 21, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "shared").count(), 1);
    let positions = (replicas.positions)();
    let mut distinct = positions.clone();
    distinct.dedup();
    assert_eq!(
        distinct, positions,
        "no two routes share a place in the order"
    );
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::on_sqlite()); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::on_postgres()); } )*
        }
    };
}

on_every_store!(
    rotating_at_once_leaves_one_signing_key_in_charge,
    the_last_two_admin_keys_revoked_at_once_leave_one,
    routes_added_at_once_each_get_a_place_of_their_own,
);
