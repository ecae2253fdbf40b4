//! Test-only fault injection. In release builds the type exists but holds nothing and
//! injects nothing: the hook is compiled out.

/// Faults armed by tests, consumed by workers.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(debug_assertions)]
    panics: std::sync::Mutex<std::collections::HashSet<String>>,
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
}
