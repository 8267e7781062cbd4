//! Exactly once over a change stream that repeats itself: after a restart, a logical slot
//! resends every transaction that committed after its confirmed LSN, and that LSN may lag
//! behind what the last published version already counted. Streamed changes are gathered
//! into whole transactions (the last change of each carries its end LSN); a transaction
//! whose end LSN is not past what was already taken is dropped whole.

use tensorcdc_change::Lsn;

/// Gathers streamed changes into transactions and drops the ones already taken.
#[derive(Debug)]
pub struct Txns<T> {
    through: Lsn,
    open: Vec<T>,
    /// Transactions dropped as repeats.
    pub repeated: u64,
}

impl<T> Txns<T> {
    /// `through`: the end LSN of the last transaction already taken (`Lsn(0)`: none).
    pub fn new(through: Lsn) -> Self {
        Txns { through, open: Vec::new(), repeated: 0 }
    }

    /// Feeds one streamed change, `ack` set on the last of its transaction. Returns the
    /// transaction it completes, unless that one was taken already.
    pub fn push(&mut self, item: T, ack: Option<Lsn>) -> Option<Vec<T>> {
        self.open.push(item);
        let end = ack?;
        let txn = std::mem::take(&mut self.open);
        if end <= self.through {
            self.repeated += 1;
            return None;
        }
        self.through = end;
        Some(txn)
    }

    /// A position read outside any transaction (an incremental snapshot's chunk, which the
    /// capture sends with its close watermark's commit): taken as passed when nothing is open.
    pub fn passed(&mut self, end: Lsn) {
        if self.open.is_empty() {
            self.through = self.through.max(end);
        }
    }

    /// The end LSN of the last transaction taken.
    pub fn through(&self) -> Lsn {
        self.through
    }

    /// The source starts again at a transaction's start (a capture reconnected and sends
    /// again what was not confirmed): the part of the open transaction is dropped, since it
    /// comes again whole.
    pub fn restart(&mut self) {
        self.open.clear();
    }

    /// True while part of a transaction has arrived and not its end.
    pub fn in_transaction(&self) -> bool {
        !self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_transactions_once_each() {
        // A restart whose slot had confirmed 100 while the last version counted up to 250.
        let mut t = Txns::new(Lsn(250));
        assert_eq!(t.push("a1", None), None);
        assert!(t.in_transaction());
        assert_eq!(t.push("a2", Some(Lsn(200))), None, "ended at 200: counted before the crash");
        assert!(!t.in_transaction());
        assert_eq!(t.push("b1", Some(Lsn(250))), None);
        assert_eq!(t.push("c1", None), None, "held until its end arrives");
        assert_eq!(t.push("c2", Some(Lsn(300))), Some(vec!["c1", "c2"]));
        assert_eq!(t.through(), Lsn(300));
        // The same transaction again (a reconnect resent it) is dropped.
        assert_eq!(t.push("c1", None), None);
        assert_eq!(t.push("c2", Some(Lsn(300))), None);
        assert_eq!(t.repeated, 3);
        assert_eq!(t.push("d1", Some(Lsn(301))), Some(vec!["d1"]));
    }

    #[test]
    fn a_reconnect_in_the_middle_of_a_transaction_sends_it_whole_again() {
        let mut t = Txns::new(Lsn(0));
        assert_eq!(t.push("e1", None), None);
        assert_eq!(t.push("e2", None), None);
        // The capture reconnects: e comes again from its start.
        t.restart();
        assert!(!t.in_transaction());
        assert_eq!(t.push("e1", None), None);
        assert_eq!(t.push("e2", None), None);
        assert_eq!(t.push("e3", Some(Lsn(400))), Some(vec!["e1", "e2", "e3"]), "each change once");
    }
}
