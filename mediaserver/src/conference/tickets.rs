//! Spent will-call tickets: a ticket is good for one accepted join, until it expires, for
//! the one user it names (the MAC covers the user). The media server remembers each ticket
//! it accepted until the ticket's expiry, so a copy of it (a replay, a second client, a
//! kicked member coming back) is refused with `reject 410`; after the expiry the ticket
//! is refused as expired anyway, so it is forgotten and memory stays bounded by the joins
//! of one ticket lifetime (`ticket_ttl`, 30 s by default).
//!
//! No client path presents a ticket twice on purpose: the join flow asks the dispatcher
//! for a fresh ticket after every loss, retry, punt or move (see `client::flow`).

use std::collections::HashMap;

/// Why a ticket cannot be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spent {
    /// Its join was accepted.
    Used,
    /// Its holder was kicked.
    Kicked,
}

impl Spent {
    /// The reject's text.
    pub(super) fn why(self) -> &'static str {
        match self {
            Spent::Used => "this ticket was already used; ask the dispatcher for a new one",
            Spent::Kicked => "this ticket's holder was removed from the conference",
        }
    }
}

/// The tickets accepted here that have not expired yet.
#[derive(Debug, Default)]
pub(super) struct SpentTickets {
    /// Ticket -> (its expiry in Unix seconds, why it is spent).
    spent: HashMap<String, (u64, Spent)>,
}

impl SpentTickets {
    /// Whether `ticket` was spent, and why.
    pub(super) fn check(&self, ticket: &str) -> Result<(), Spent> {
        match self.spent.get(ticket) {
            Some((_, why)) => Err(*why),
            None => Ok(()),
        }
    }

    /// Spends `ticket` (valid until `expires`) for a join: refused when it already was.
    pub(super) fn claim(&mut self, ticket: &str, expires: u64) -> Result<(), Spent> {
        self.check(ticket)?;
        self.spent.insert(ticket.to_owned(), (expires, Spent::Used));
        Ok(())
    }

    /// Gives back a ticket whose join failed after [`SpentTickets::claim`]: nothing was
    /// accepted, so its holder may try again.
    pub(super) fn release(&mut self, ticket: &str) {
        if let Some((_, Spent::Used)) = self.spent.get(ticket) {
            self.spent.remove(ticket);
        }
    }

    /// Marks the ticket of a kicked member (valid until `expires`).
    pub(super) fn kick(&mut self, ticket: &str, expires: u64) {
        self.spent
            .insert(ticket.to_owned(), (expires, Spent::Kicked));
    }

    /// Forgets the tickets that expired before `now` (Unix seconds): they are refused as
    /// expired from then on.
    pub(super) fn sweep(&mut self, now: u64) {
        self.spent.retain(|_, (exp, _)| *exp >= now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.spent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_good_for_one_join_until_it_expires() {
        let mut s = SpentTickets::default();
        assert_eq!(s.claim("100.a", 100), Ok(()));
        assert_eq!(s.claim("100.a", 100), Err(Spent::Used));
        assert_eq!(s.check("100.a"), Err(Spent::Used));
        // Another ticket of the same second is another ticket.
        assert_eq!(s.claim("100.b", 100), Ok(()));
        // A join that failed after its claim gives the ticket back.
        s.release("100.b");
        assert_eq!(s.claim("100.b", 100), Ok(()));
        // Kicked: refused with its own reason, and a release does not undo it.
        s.kick("100.a", 100);
        s.release("100.a");
        assert_eq!(s.check("100.a"), Err(Spent::Kicked));
        // Kept through its last valid second, forgotten after.
        s.sweep(100);
        assert_eq!(s.len(), 2);
        s.claim("200.c", 200).unwrap();
        s.sweep(101);
        assert_eq!(s.len(), 1);
        assert_eq!(s.check("100.a"), Ok(()));
        assert_eq!(s.check("200.c"), Err(Spent::Used));
    }

    #[test]
    fn memory_is_bounded_by_one_ticket_lifetime() {
        let mut s = SpentTickets::default();
        // 200 joins a second for two minutes, tickets living 30 s, swept each second.
        for second in 0..120u64 {
            for j in 0..200 {
                s.claim(&format!("{}.{second}-{j}", second + 30), second + 30)
                    .unwrap();
            }
            s.sweep(second);
            assert!(s.len() <= 31 * 200, "{second}: {}", s.len());
        }
        s.sweep(10_000);
        assert_eq!(s.len(), 0);
    }
}
