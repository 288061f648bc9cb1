//! Which of a mirrored set's writes one instance is known to hold.
//!
//! Every write to a mirrored set bumps a counter in the store in the same atomic step as
//! the write itself ([`Store::raise`](super::Store::raise)), and its announcement carries
//! the number the counter gave it. An instance that holds every write numbered up to the
//! counter's current value has missed nothing, so its periodic resync can stop after
//! reading that one number instead of reading the whole set. A gap (a lost message, a
//! failed announcement) or a counter that went back (the store lost its data) means a
//! full read; so does every [`FULL_EVERY`]-th resync, whatever the counter says, which
//! bounds what no counter can see (a key written into the store by hand, a store that
//! lost its data and counted back up to the same number).

use std::collections::BTreeSet;

/// At most this many resyncs in a row stop at the counter; the next reads everything.
pub const FULL_EVERY: u32 = 30;

/// At most this many out-of-order numbers are remembered; past that a full read settles
/// it (a gap that never closes must not grow without bound).
const MAX_AHEAD: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every write numbered up to this one is held.
    through: u64,
    /// Writes numbered above `through` that arrived before one below them.
    ahead: BTreeSet<u64>,
    /// A full read completed since the last [`Seen::forget`].
    loaded: bool,
    /// Bumped by every [`Seen::forget`]: a full read that began before one does not count.
    epoch: u64,
    /// Resyncs that stopped at the counter since the last full read.
    skipped: u32,
}

/// What a full read must remember from the moment it began (see [`Seen::begin`]).
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    counter: u64,
    epoch: u64,
    /// The counter was below what had been seen: it went back (the store lost its data).
    went_back: bool,
}

impl Seen {
    /// Records that the write numbered `generation` is held.
    pub fn saw(&mut self, generation: u64) {
        if generation <= self.through {
            return;
        }
        if self.ahead.len() < MAX_AHEAD {
            self.ahead.insert(generation);
        }
        self.advance();
    }

    fn advance(&mut self) {
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }

    /// Whether a periodic resync that read the store's `counter` may stop there: every
    /// write up to it is held, and the last full read is fewer than [`FULL_EVERY`]
    /// resyncs ago. Counts the stop.
    pub fn may_skip(&mut self, counter: u64) -> bool {
        // Equal only: a counter below what was seen went back (the store lost its data).
        let skip = self.loaded && self.through == counter && self.skipped + 1 < FULL_EVERY;
        if skip {
            self.skipped += 1;
        }
        skip
    }

    /// Forgets what is held (a write of ours may be missing from the store): the next
    /// resync reads everything, and one already running does not count.
    pub fn forget(&mut self) {
        self.loaded = false;
        self.epoch += 1;
    }

    /// Starts a full read after the store's counter read `counter`.
    pub fn begin(&self, counter: u64) -> Ticket {
        Ticket {
            counter,
            epoch: self.epoch,
            went_back: counter < self.through,
        }
    }

    /// Records that the full read `ticket` began is complete: every write numbered up to
    /// its counter is held now, unless [`Seen::forget`] was called since it began.
    pub fn read_all(&mut self, ticket: Ticket) {
        if ticket.epoch != self.epoch {
            return;
        }
        self.loaded = true;
        self.skipped = 0;
        if ticket.went_back {
            // Numbers of the counter's former life say nothing about its new one.
            self.ahead.clear();
            self.through = ticket.counter;
        } else {
            self.through = self.through.max(ticket.counter);
            let through = self.through;
            self.ahead.retain(|g| *g > through);
        }
        self.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &mut Seen, counter: u64) {
        let t = s.begin(counter);
        s.read_all(t);
    }

    #[test]
    fn a_gap_needs_a_full_read_until_it_closes() {
        let mut s = Seen::default();
        assert!(!s.may_skip(0), "nothing read yet");
        read(&mut s, 3);
        assert!(s.may_skip(3));
        s.saw(5);
        assert!(!s.may_skip(5), "4 is missing");
        s.saw(4);
        assert!(s.may_skip(5));
        s.saw(2);
        assert!(s.may_skip(5), "old numbers change nothing");
    }

    #[test]
    fn a_counter_that_went_back_needs_a_full_read_and_drops_old_numbers() {
        let mut s = Seen::default();
        read(&mut s, 10);
        s.saw(12);
        assert!(!s.may_skip(2));
        read(&mut s, 2);
        assert!(s.may_skip(2));
        // 12 was a number of the counter's former life: 3..=12 are not held.
        s.saw(3);
        assert!(!s.may_skip(4));
    }

    #[test]
    fn a_full_read_keeps_what_arrived_ahead_of_it() {
        let mut s = Seen::default();
        read(&mut s, 1);
        s.saw(4);
        s.saw(5);
        read(&mut s, 3);
        assert!(s.may_skip(5));
    }

    #[test]
    fn a_write_that_failed_during_a_full_read_voids_it() {
        let mut s = Seen::default();
        read(&mut s, 1);
        let t = s.begin(1);
        s.forget();
        s.read_all(t);
        assert!(
            !s.may_skip(1),
            "the failed write may be missing from the store"
        );
        read(&mut s, 1);
        assert!(s.may_skip(1));
    }

    #[test]
    fn every_thirtieth_resync_reads_everything() {
        let mut s = Seen::default();
        read(&mut s, 7);
        for i in 1..FULL_EVERY {
            assert!(s.may_skip(7), "resync {i}");
        }
        assert!(!s.may_skip(7));
        read(&mut s, 7);
        assert!(s.may_skip(7));
    }
}
