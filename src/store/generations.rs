//! Which of a mirrored set's writes one instance is known to hold.
//!
//! Every write to a mirrored set bumps a counter in the store (after the write itself),
//! and its announcement carries the number the counter gave it. An instance that holds
//! every write numbered up to the counter's current value has missed nothing, so its
//! periodic resync can stop after reading that one number instead of reading the whole
//! set. A gap (a lost message, a failed announcement) or a counter that went back (the
//! store lost its data, or the counter expired) means a full read.

use std::collections::BTreeSet;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every write numbered up to this one is held.
    through: u64,
    /// Writes numbered above `through` that arrived before one below them.
    ahead: BTreeSet<u64>,
    /// Nothing was read yet: the first resync always reads everything.
    loaded: bool,
}

/// At most this many out-of-order numbers are remembered; past that a full read settles
/// it (a gap that never closes must not grow without bound).
const MAX_AHEAD: usize = 4096;

impl Seen {
    /// Records that the write numbered `generation` is held.
    pub fn saw(&mut self, generation: u64) {
        if generation <= self.through {
            return;
        }
        if self.ahead.len() < MAX_AHEAD {
            self.ahead.insert(generation);
        }
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }

    /// Whether every write up to the store's `counter` is held (no full read needed).
    pub fn holds_all(&self, counter: u64) -> bool {
        // Equal only: a counter below what was seen went back (the store lost its data).
        self.loaded && self.through == counter
    }

    /// Forgets what is held: the next resync reads everything.
    pub fn forget(&mut self) {
        self.loaded = false;
    }

    /// Records a full read that started after the store's counter read `counter`: every
    /// write numbered up to it is held now.
    pub fn read_all(&mut self, counter: u64) {
        self.loaded = true;
        self.through = counter;
        self.ahead.retain(|g| *g > counter);
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_needs_a_full_read_until_it_closes() {
        let mut s = Seen::default();
        assert!(!s.holds_all(0), "nothing read yet");
        s.read_all(3);
        assert!(s.holds_all(3));
        s.saw(5);
        assert!(!s.holds_all(5), "4 is missing");
        s.saw(4);
        assert!(s.holds_all(5));
        s.saw(2);
        assert!(s.holds_all(5), "old numbers change nothing");
    }

    #[test]
    fn a_counter_that_went_back_needs_a_full_read() {
        let mut s = Seen::default();
        s.read_all(10);
        assert!(!s.holds_all(2));
        s.read_all(2);
        assert!(s.holds_all(2));
    }

    #[test]
    fn a_full_read_keeps_what_arrived_ahead_of_it() {
        let mut s = Seen::default();
        s.read_all(1);
        s.saw(4);
        s.saw(5);
        s.read_all(3);
        assert!(s.holds_all(5));
    }
}
