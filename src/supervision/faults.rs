//! Test-only fault injection. In release builds the type exists but holds nothing and
//! injects nothing: the hook is compiled out.

/// Faults armed by tests, consumed by workers.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(debug_assertions)]
    panics: std::sync::Mutex<std::collections::HashSet<String>>,
    #[cfg(debug_assertions)]
    tree_start: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// Makes the worker with health key `key` panic on its next tick (debug builds only).
    #[cfg(debug_assertions)]
    pub fn inject_panic(&self, key: &str) {
        if let Ok(mut p) = self.panics.lock() {
            p.insert(key.to_string());
        }
    }

    /// Panics if a panic was armed for `key` (debug builds only).
    #[cfg(debug_assertions)]
    pub fn maybe_panic(&self, key: &str) {
        let armed = self
            .panics
            .lock()
            .map(|mut p| p.remove(key))
            .unwrap_or(false);
        if armed {
            panic!("injected panic (test hook) in {key}");
        }
    }

    /// No-op in release builds.
    #[cfg(not(debug_assertions))]
    #[inline(always)]
    pub fn maybe_panic(&self, _key: &str) {}

    /// Makes the next actor-tree start fail (debug builds only).
    #[cfg(debug_assertions)]
    pub fn fail_tree_start(&self) {
        self.tree_start
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a tree-start failure was armed (always false in release builds).
    pub fn tree_start_fails(&self) -> bool {
        #[cfg(debug_assertions)]
        {
            self.tree_start
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(debug_assertions))]
        {
            false
        }
    }
}
