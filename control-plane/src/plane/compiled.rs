//! The compiled configuration the admin API verifies its callers against, kept between calls.
//! Rendering and compiling everything (every key, API key, revocation and route) costs
//! milliseconds per call on a large installation; the store's revision says when it changed.

use std::sync::{Arc, Mutex, PoisonError};

use tokenward_filter::policy::Policy;

use super::PlaneError;
use crate::store::Store;

/// A compiled policy and the next time the clock alone changes what it would be.
pub struct Compiled {
    pub policy: Policy,
    /// When a signing key is next announced, retires or is unpublished; `None`: never.
    pub changes_at: Option<u64>,
}

struct Entry {
    revision: u64,
    compiled_at: u64,
    compiled: Arc<Compiled>,
}

impl Entry {
    fn holds_for(&self, revision: u64, now: u64) -> bool {
        self.revision == revision
            && now >= self.compiled_at
            && self.compiled.changes_at.is_none_or(|t| now < t)
    }
}

#[derive(Default)]
pub struct CompiledPolicy {
    current: Mutex<Option<Entry>>,
    /// Held while compiling: callers that find the entry stale wait for one compilation
    /// instead of each running their own.
    compiling: Mutex<()>,
}

/// A compiled policy that derefs to its `Policy`.
pub struct Shared(Arc<Compiled>);

impl AsRef<Policy> for Shared {
    fn as_ref(&self) -> &Policy {
        &self.0.policy
    }
}

/// A policy as `CompiledPolicy::current` found it.
pub enum Found {
    /// For the store's revision and the clock now.
    Fresh(Shared),
    /// The one before, while another caller compiles the new one.
    Stale(Shared),
}

impl CompiledPolicy {
    /// The policy for the store as it is now, or — while another caller is compiling it —
    /// the one before. Callers use a stale one only to accept what it accepts; what it
    /// refuses they check again against `fresh` (a credential created a moment ago).
    pub fn current<S: Store + ?Sized>(
        &self,
        store: &S,
        now: u64,
        compile: impl FnOnce() -> Result<Compiled, PlaneError>,
    ) -> Result<Found, PlaneError> {
        let revision = store.revision()?;
        if let Some(found) = self.lookup(revision, now) {
            return Ok(Found::Fresh(found));
        }
        let compiling = match self.compiling.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => match self.any() {
                Some(stale) => return Ok(Found::Stale(stale)),
                None => self
                    .compiling
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            },
        };
        self.compile_holding(&compiling, store, now, compile)
            .map(Found::Fresh)
    }

    /// The policy for the store as it is now: the kept one while it holds, else a new one
    /// from `compile`.
    pub fn fresh<S: Store + ?Sized>(
        &self,
        store: &S,
        now: u64,
        compile: impl FnOnce() -> Result<Compiled, PlaneError>,
    ) -> Result<Shared, PlaneError> {
        let compiling = self
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.compile_holding(&compiling, store, now, compile)
    }

    /// Compiles unless the kept one holds (another caller may have compiled it while this
    /// one waited); `_compiling` proves the caller holds the compile lock.
    fn compile_holding<S: Store + ?Sized>(
        &self,
        _compiling: &std::sync::MutexGuard<'_, ()>,
        store: &S,
        now: u64,
        compile: impl FnOnce() -> Result<Compiled, PlaneError>,
    ) -> Result<Shared, PlaneError> {
        // Read before the render: a change committed during it moves the revision past this
        // one, so the next call compiles again rather than keep an older state as newer.
        let revision = store.revision()?;
        if let Some(found) = self.lookup(revision, now) {
            return Ok(found);
        }
        let compiled = Arc::new(compile()?);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Entry {
            revision,
            compiled_at: now,
            compiled: Arc::clone(&compiled),
        });
        Ok(Shared(compiled))
    }

    fn lookup(&self, revision: u64, now: u64) -> Option<Shared> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|entry| entry.holds_for(revision, now))
            .map(|entry| Shared(Arc::clone(&entry.compiled)))
    }

    fn any(&self) -> Option<Shared> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .map(|entry| Shared(Arc::clone(&entry.compiled)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use tokenward_filter::config::Config;

    use super::*;
    use crate::store::SqliteStore;

    /// A compiled policy told apart by its `changes_at`, far in the future.
    fn compiled(mark: u64) -> Result<Compiled, PlaneError> {
        let json =
            r#"{"issuer":"https://cp.test","audiences":["gateway"],"providers":[],"routes":[]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        Ok(Compiled {
            policy: Policy::compile(&config, &|_| None).unwrap(),
            changes_at: Some(1_000_000 + mark),
        })
    }

    fn mark(found: &Shared) -> u64 {
        found.0.changes_at.unwrap() - 1_000_000
    }

    #[test]
    fn a_change_is_compiled_once_and_the_one_before_serves_only_while_it_compiles() {
        let store = SqliteStore::in_memory().unwrap();
        let kept = CompiledPolicy::default();
        let Found::Fresh(first) = kept.current(&store, 10, || compiled(1)).unwrap() else {
            panic!("nothing was kept yet")
        };
        assert_eq!(mark(&first), 1);
        let Found::Fresh(again) = kept
            .current(&store, 10, || panic!("compiled again"))
            .unwrap()
        else {
            panic!("stale without a change")
        };
        assert_eq!(mark(&again), 1, "unchanged: kept, not compiled again");
        // A change, while another caller is compiling it: the one before, marked stale.
        store.set_setting("issuer", "https://other.test").unwrap();
        let (started, wait) = mpsc::channel();
        let (finish, finished) = mpsc::channel::<()>();
        let (kept_ref, store_ref) = (&kept, &store);
        std::thread::scope(|scope| {
            let compiling = scope.spawn(move || {
                let found = kept_ref
                    .current(store_ref, 10, || {
                        started.send(()).unwrap();
                        finished.recv().unwrap();
                        compiled(2)
                    })
                    .unwrap();
                matches!(found, Found::Fresh(f) if mark(&f) == 2)
            });
            wait.recv().unwrap();
            let Found::Stale(stale) = kept
                .current(&store, 10, || panic!("a second compilation"))
                .unwrap()
            else {
                panic!("waited for the compilation")
            };
            assert_eq!(mark(&stale), 1);
            finish.send(()).unwrap();
            assert!(
                compiling.join().unwrap(),
                "the compiling caller gets the new one"
            );
        });
        let fresh = kept.fresh(&store, 10, || panic!("compiled again")).unwrap();
        assert_eq!(mark(&fresh), 2, "`fresh` never hands out the one before");
        // The keys' schedule: from `changes_at` on, the kept one no longer holds.
        let at = 1_000_002;
        assert!(matches!(
            kept.current(&store, at - 1, || panic!("compiled early"))
                .unwrap(),
            Found::Fresh(_)
        ));
        let later = kept.fresh(&store, at, || compiled(3)).unwrap();
        assert_eq!(mark(&later), 3);
    }
}
