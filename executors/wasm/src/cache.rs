//! A small LRU of compiled modules, bounded by count and by module bytes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::id::ModuleId;

struct Slot<V> {
    value: Arc<V>,
    size: usize,
    last_used: u64,
}

/// Least-recently-used cache; `get` counts as a use. Linear-time eviction
/// is fine at the few dozen entries it is meant for.
pub(crate) struct Lru<V> {
    slots: HashMap<ModuleId, Slot<V>>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    clock: u64,
}

impl<V> Lru<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            slots: HashMap::new(),
            // At least one entry, or a load would evict itself.
            max_entries: max_entries.max(1),
            max_bytes,
            bytes: 0,
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    pub fn get(&mut self, id: &ModuleId) -> Option<Arc<V>> {
        let now = self.tick();
        let slot = self.slots.get_mut(id)?;
        slot.last_used = now;
        Some(Arc::clone(&slot.value))
    }

    /// Whether `id` is cached, without counting it as a use.
    pub fn contains(&self, id: &ModuleId) -> bool {
        self.slots.contains_key(id)
    }

    /// Inserts `value`, then evicts least-recently-used entries (never the
    /// new one) until within both bounds.
    pub fn insert(&mut self, id: ModuleId, value: Arc<V>, size: usize) {
        let now = self.tick();
        if let Some(old) = self.slots.insert(
            id,
            Slot {
                value,
                size,
                last_used: now,
            },
        ) {
            self.bytes = self.bytes.saturating_sub(old.size);
        }
        self.bytes = self.bytes.saturating_add(size);
        while self.slots.len() > self.max_entries || self.bytes > self.max_bytes {
            let victim = self
                .slots
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            if let Some(s) = self.slots.remove(&victim) {
                self.bytes = self.bytes.saturating_sub(s.size);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ModuleId {
        ModuleId::from_bytes([n; 32])
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut c = Lru::new(2, usize::MAX);
        c.insert(id(1), Arc::new(1), 1);
        c.insert(id(2), Arc::new(2), 1);
        assert!(c.get(&id(1)).is_some());
        c.insert(id(3), Arc::new(3), 1);
        assert!(c.contains(&id(1)));
        assert!(!c.contains(&id(2)));
        assert!(c.contains(&id(3)));
    }

    #[test]
    fn evicts_by_bytes_but_keeps_the_newest() {
        let mut c = Lru::new(10, 100);
        c.insert(id(1), Arc::new(1), 60);
        c.insert(id(2), Arc::new(2), 60);
        assert!(!c.contains(&id(1)));
        assert!(c.contains(&id(2)));
        c.insert(id(3), Arc::new(3), 500);
        assert_eq!(c.len(), 1);
        assert!(c.contains(&id(3)));
    }
}
