//! The payment lifecycle as pure functions: given what a payment is and what
//! just happened, what it becomes and which event that produces.

use alloy::primitives::U256;
use chrono::{DateTime, Utc};

use super::status::{PaymentException, PaymentStatus};

/// The parts of a payment the lifecycle looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentFacts {
    /// Current status.
    pub status: PaymentStatus,
    /// Current exception.
    pub exception: Option<PaymentException>,
    /// Requested amount.
    pub amount: U256,
    /// Sum of counted, canonical transfers as currently stored.
    pub received: U256,
    /// End of the payment window.
    pub expires_at: DateTime<Utc>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The scanner recorded transfers.
    Funds(Sums),
    /// A reorg removed or moved transfers.
    Reorg(Sums),
    /// Every counted transfer is at least `confirmations_required` deep on the canonical chain.
    DeepEnough,
    /// Time passed (the confirmer's tick).
    Clock {
        /// Now.
        now: DateTime<Utc>,
    },
    /// The merchant asked to cancel.
    Cancel {
        /// Whether the scanner has read the chain up to the head it last saw (funds may
        /// otherwise sit in blocks it has not read yet).
        chain_scanned: bool,
    },
}

/// A payment's counted, canonical transfers, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sums {
    /// Every counted, canonical transfer.
    pub received: U256,
    /// Those whose block is timestamped at or before the payment's `expires_at`: funds
    /// that were paid in time, whenever the scanner happened to see them.
    pub in_time: U256,
}

impl Sums {
    /// Sums where every transfer was in time.
    pub fn in_time(received: U256) -> Self {
        Self {
            received,
            in_time: received,
        }
    }
}

/// A change to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// New status (may equal the old one).
    pub status: PaymentStatus,
    /// New exception.
    pub exception: Option<PaymentException>,
    /// New received sum.
    pub received: U256,
    /// The event this change produces, with its history reason; `None` for a silent
    /// update (amounts only).
    pub event: Option<(&'static str, &'static str)>,
}

/// Why a merchant's request (a cancel) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not pending, or something was received.
    #[error("a payment can be canceled only while pending with nothing received; it is {0}")]
    NotCancelable(PaymentStatus),
    /// The scanner has not seen the chain up to its head: funds may sit in blocks it has
    /// not read yet.
    #[error("the chain is not scanned up to its head yet, so funds may already have arrived; try again shortly")]
    ChainNotScanned,
}

fn rank(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Pending => 0,
        PaymentStatus::PartiallyPaid => 1,
        PaymentStatus::Processing => 2,
        _ => 3,
    }
}

fn funded_status(received: U256, amount: U256) -> PaymentStatus {
    if received.is_zero() {
        PaymentStatus::Pending
    } else if received < amount {
        PaymentStatus::PartiallyPaid
    } else {
        PaymentStatus::Processing
    }
}

fn event_for(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::PartiallyPaid => "payment.partially_paid",
        PaymentStatus::Processing => "payment.processing",
        PaymentStatus::Confirmed => "payment.confirmed",
        PaymentStatus::Expired => "payment.expired",
        PaymentStatus::Canceled => "payment.canceled",
        // Funds never move a payment forward to pending; only a reorg moves it back there.
        PaymentStatus::Pending => "payment.reorged",
    }
}

/// The event that announces funds reaching a closed (confirmed, expired, canceled)
/// payment's address.
pub const LATE_FUNDS_EVENT: &str = "payment.late_funds";

/// Applies `cause` to `p`: `Ok(None)` when nothing changes, `Err` when a merchant's
/// request is refused (only [`Cause::Cancel`] can be refused; what the chain and the clock
/// do always applies).
pub fn apply(p: &PaymentFacts, cause: Cause) -> Result<Option<Change>, Refused> {
    let change = match cause {
        Cause::Funds(sums) => on_funds(p, sums, false),
        Cause::Reorg(sums) => on_funds(p, sums, true),
        Cause::DeepEnough => (p.status == PaymentStatus::Processing).then_some(Change {
            status: PaymentStatus::Confirmed,
            exception: p.exception,
            received: p.received,
            event: Some(("payment.confirmed", "confirmed")),
        }),
        Cause::Clock { now } => {
            let expirable = matches!(
                p.status,
                PaymentStatus::Pending | PaymentStatus::PartiallyPaid
            );
            (expirable && now >= p.expires_at).then(|| Change {
                status: PaymentStatus::Expired,
                exception: (!p.received.is_zero()).then_some(PaymentException::Underpaid),
                received: p.received,
                event: Some(("payment.expired", "expired")),
            })
        }
        Cause::Cancel { chain_scanned } => Some(cancel(p, chain_scanned)?),
    };
    Ok(change.filter(|c| {
        c.status != p.status
            || c.exception != p.exception
            || c.received != p.received
            || c.event.is_some()
    }))
}

/// A merchant's cancel: only while pending with nothing received, and only once the
/// scanner has read the chain up to its head (`chain_scanned`).
fn cancel(p: &PaymentFacts, chain_scanned: bool) -> Result<Change, Refused> {
    if !p.status.can_cancel(!p.received.is_zero()) {
        return Err(Refused::NotCancelable(p.status));
    }
    if !chain_scanned {
        return Err(Refused::ChainNotScanned);
    }
    Ok(Change {
        status: PaymentStatus::Canceled,
        exception: None,
        received: p.received,
        event: Some(("payment.canceled", "canceled_by_merchant")),
    })
}

/// The exception of a confirmed payment holding `received`: a reorg can take counted funds
/// away after confirmation, which shows as `underpaid`.
fn confirmed_exception(received: U256, amount: U256) -> Option<PaymentException> {
    if received > amount {
        Some(PaymentException::Overpaid)
    } else if received < amount {
        Some(PaymentException::Underpaid)
    } else {
        None
    }
}

fn on_funds(p: &PaymentFacts, sums: Sums, reorg: bool) -> Option<Change> {
    let received = sums.received;
    if received == p.received {
        return None;
    }
    let more = received > p.received;
    let overpaid = received > p.amount;
    match p.status {
        // Final for the merchant: the status stays, but every change of the funds is
        // recorded and announced. New funds are late funds; funds a reorg took away are a
        // reorg (on a confirmed payment, a critical condition operators are alerted to).
        PaymentStatus::Confirmed => Some(Change {
            status: p.status,
            exception: confirmed_exception(received, p.amount),
            received,
            event: Some(if more && !reorg {
                (LATE_FUNDS_EVENT, "late_funds")
            } else {
                ("payment.reorged", "reorg")
            }),
        }),
        PaymentStatus::Canceled => Some(Change {
            status: p.status,
            exception: (!received.is_zero()).then_some(PaymentException::PaidLate),
            received,
            event: Some(if more && !reorg {
                (LATE_FUNDS_EVENT, "late_funds")
            } else {
                ("payment.reorged", "reorg")
            }),
        }),
        PaymentStatus::Expired => {
            if more && sums.in_time >= p.amount {
                // The full amount was paid in blocks stamped before the window ended: the
                // expiry was premature (the funds sat in blocks not scanned yet), so the
                // payment goes on as paid in time.
                Some(Change {
                    status: PaymentStatus::Processing,
                    exception: overpaid.then_some(PaymentException::Overpaid),
                    received,
                    event: Some(("payment.processing", "paid_in_time")),
                })
            } else if more && !reorg {
                let late = received > sums.in_time;
                Some(Change {
                    status: PaymentStatus::Expired,
                    exception: Some(if late {
                        PaymentException::PaidLate
                    } else {
                        PaymentException::Underpaid
                    }),
                    received,
                    event: Some((LATE_FUNDS_EVENT, "late_funds")),
                })
            } else {
                Some(Change {
                    status: PaymentStatus::Expired,
                    exception: if received.is_zero() {
                        None
                    } else if received > sums.in_time {
                        Some(PaymentException::PaidLate)
                    } else {
                        Some(PaymentException::Underpaid)
                    },
                    received,
                    event: Some(("payment.reorged", "reorg")),
                })
            }
        }
        PaymentStatus::Pending | PaymentStatus::PartiallyPaid | PaymentStatus::Processing => {
            let status = funded_status(received, p.amount);
            let exception = overpaid.then_some(PaymentException::Overpaid);
            let event = if reorg || rank(status) < rank(p.status) {
                Some(("payment.reorged", "reorg"))
            } else if status != p.status {
                Some((event_for(status), "funds_received"))
            } else {
                None
            };
            Some(Change {
                status,
                exception,
                received,
                event,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn facts(status: PaymentStatus, received: u64) -> PaymentFacts {
        PaymentFacts {
            status,
            exception: None,
            amount: U256::from(100u64),
            received: U256::from(received),
            expires_at: Utc::now() + Duration::hours(1),
        }
    }

    /// Applies a cause of the chain or the clock, which is never refused.
    fn on(p: &PaymentFacts, cause: Cause) -> Option<Change> {
        apply(p, cause).expect("chain and clock causes always apply")
    }

    fn cancel(
        status: PaymentStatus,
        received: U256,
        chain_scanned: bool,
    ) -> Result<Change, Refused> {
        let mut p = facts(status, 0);
        p.received = received;
        apply(&p, Cause::Cancel { chain_scanned }).map(|c| c.expect("a cancel changes the status"))
    }

    fn funds(n: u64) -> Cause {
        Cause::Funds(Sums::in_time(U256::from(n)))
    }

    fn late(n: u64) -> Cause {
        Cause::Funds(Sums {
            received: U256::from(n),
            in_time: U256::ZERO,
        })
    }

    fn reorg(n: u64) -> Cause {
        Cause::Reorg(Sums::in_time(U256::from(n)))
    }

    #[test]
    fn transfers_are_summed_into_partial_then_processing() {
        let c = on(&facts(PaymentStatus::Pending, 0), funds(40)).expect("change");
        assert_eq!(c.status, PaymentStatus::PartiallyPaid);
        assert_eq!(c.event, Some(("payment.partially_paid", "funds_received")));
        let c = on(&facts(PaymentStatus::PartiallyPaid, 40), funds(100)).expect("change");
        assert_eq!(c.status, PaymentStatus::Processing);
        assert_eq!(c.exception, None);
        assert_eq!(c.event, Some(("payment.processing", "funds_received")));
    }

    #[test]
    fn overpayment_is_flagged() {
        let c = on(&facts(PaymentStatus::Pending, 0), funds(150)).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Processing, Some(PaymentException::Overpaid))
        );
        // More funds while processing: flag only, no event.
        let c = on(&facts(PaymentStatus::Processing, 100), funds(120)).expect("change");
        assert_eq!(
            (c.exception, c.event),
            (Some(PaymentException::Overpaid), None)
        );
    }

    #[test]
    fn expiry_with_and_without_funds() {
        let mut p = facts(PaymentStatus::PartiallyPaid, 30);
        p.expires_at = Utc::now() - Duration::seconds(1);
        let c = on(&p, Cause::Clock { now: Utc::now() }).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Expired, Some(PaymentException::Underpaid))
        );
        assert_eq!(c.event, Some(("payment.expired", "expired")));
        let mut p = facts(PaymentStatus::Pending, 0);
        p.expires_at = Utc::now() - Duration::seconds(1);
        let c = on(&p, Cause::Clock { now: Utc::now() }).expect("change");
        assert_eq!(c.exception, None);
        // Not yet expired, or already fully paid: nothing.
        assert_eq!(
            on(
                &facts(PaymentStatus::Pending, 0),
                Cause::Clock { now: Utc::now() }
            ),
            None
        );
        let mut p = facts(PaymentStatus::Processing, 100);
        p.expires_at = Utc::now() - Duration::seconds(1);
        assert_eq!(on(&p, Cause::Clock { now: Utc::now() }), None);
    }

    #[test]
    fn late_funds_after_expiry() {
        let c = on(&facts(PaymentStatus::Expired, 0), late(100)).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Expired, Some(PaymentException::PaidLate))
        );
        assert_eq!(c.event, Some(("payment.late_funds", "late_funds")));
    }

    #[test]
    fn lateness_is_decided_by_block_time_not_by_scan_time() {
        // Expired, then the scanner finds the full amount in a block stamped before the
        // window ended: it was paid in time.
        let c = on(&facts(PaymentStatus::Expired, 0), funds(100)).expect("change");
        assert_eq!((c.status, c.exception), (PaymentStatus::Processing, None));
        assert_eq!(c.event, Some(("payment.processing", "paid_in_time")));
        // Part of it in time, the rest late: paid late.
        let c = on(
            &facts(PaymentStatus::Expired, 0),
            Cause::Funds(Sums {
                received: U256::from(100u64),
                in_time: U256::from(40u64),
            }),
        )
        .expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Expired, Some(PaymentException::PaidLate))
        );
        // Less than the amount, all in time: still underpaid, announced.
        let c = on(&facts(PaymentStatus::Expired, 0), funds(40)).expect("change");
        assert_eq!(
            (c.status, c.exception, c.event),
            (
                PaymentStatus::Expired,
                Some(PaymentException::Underpaid),
                Some(("payment.late_funds", "late_funds"))
            )
        );
    }

    #[test]
    fn reorgs_move_payments_back_with_one_event() {
        let c = on(&facts(PaymentStatus::Processing, 100), reorg(0)).expect("change");
        assert_eq!(c.status, PaymentStatus::Pending);
        assert_eq!(c.event, Some(("payment.reorged", "reorg")));
        let c = on(&facts(PaymentStatus::Processing, 100), reorg(60)).expect("change");
        assert_eq!(c.status, PaymentStatus::PartiallyPaid);
        // A reorg that re-includes the same amount changes nothing.
        assert_eq!(on(&facts(PaymentStatus::Processing, 100), reorg(100)), None);
    }

    #[test]
    fn confirmation_only_from_processing() {
        let c = on(&facts(PaymentStatus::Processing, 100), Cause::DeepEnough).expect("change");
        assert_eq!(c.status, PaymentStatus::Confirmed);
        assert_eq!(c.event, Some(("payment.confirmed", "confirmed")));
        for s in [
            PaymentStatus::Pending,
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Confirmed,
            PaymentStatus::Expired,
        ] {
            assert_eq!(on(&facts(s, 100), Cause::DeepEnough), None, "{s}");
        }
    }

    #[test]
    fn closed_payments_keep_their_status_and_announce_late_funds() {
        let c = on(&facts(PaymentStatus::Confirmed, 100), funds(130)).expect("change");
        assert_eq!(
            (c.status, c.exception, c.event),
            (
                PaymentStatus::Confirmed,
                Some(PaymentException::Overpaid),
                Some(("payment.late_funds", "late_funds"))
            )
        );
        let c = on(&facts(PaymentStatus::Canceled, 0), funds(5)).expect("change");
        assert_eq!(
            (c.status, c.exception, c.event),
            (
                PaymentStatus::Canceled,
                Some(PaymentException::PaidLate),
                Some(("payment.late_funds", "late_funds"))
            )
        );
    }

    #[test]
    fn a_reorg_that_takes_confirmed_funds_away_is_announced_as_underpaid() {
        let c = on(&facts(PaymentStatus::Confirmed, 100), reorg(0)).expect("change");
        assert_eq!(
            (c.status, c.exception, c.event),
            (
                PaymentStatus::Confirmed,
                Some(PaymentException::Underpaid),
                Some(("payment.reorged", "reorg"))
            )
        );
        // The funds come back (re-included later): late funds, exception cleared.
        let mut p = facts(PaymentStatus::Confirmed, 0);
        p.exception = Some(PaymentException::Underpaid);
        let c = on(&p, funds(100)).expect("change");
        assert_eq!(
            (c.exception, c.event),
            (None, Some(("payment.late_funds", "late_funds")))
        );
    }

    #[test]
    fn cancel_waits_for_the_scanner_and_refuses_funded_payments() {
        let zero = U256::ZERO;
        assert_eq!(
            cancel(PaymentStatus::Pending, zero, false),
            Err(Refused::ChainNotScanned)
        );
        let c = cancel(PaymentStatus::Pending, zero, true).expect("cancel");
        assert_eq!(c.status, PaymentStatus::Canceled);
        assert_eq!(c.event, Some(("payment.canceled", "canceled_by_merchant")));
        assert_eq!(
            cancel(PaymentStatus::Pending, U256::from(1u64), true),
            Err(Refused::NotCancelable(PaymentStatus::Pending))
        );
        assert_eq!(
            cancel(PaymentStatus::Processing, U256::from(100u64), true),
            Err(Refused::NotCancelable(PaymentStatus::Processing))
        );
    }
}
