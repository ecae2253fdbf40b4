//! The payment lifecycle (CONTRACT §4) as pure functions: given what a payment is and what
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
    /// The scanner recorded transfers; `received` is the new sum.
    Funds {
        /// New sum of counted, canonical transfers.
        received: U256,
    },
    /// A reorg removed or moved transfers; `received` is the new sum.
    Reorg {
        /// New sum of counted, canonical transfers.
        received: U256,
    },
    /// Every counted transfer is at least `confirmations_required` deep on the canonical chain.
    DeepEnough,
    /// Time passed (the confirmer's tick).
    Clock {
        /// Now.
        now: DateTime<Utc>,
    },
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

/// Applies `cause` to `p`. `None` when nothing changes.
pub fn apply(p: &PaymentFacts, cause: Cause) -> Option<Change> {
    let change = match cause {
        Cause::Funds { received } | Cause::Reorg { received } => {
            let reorg = matches!(cause, Cause::Reorg { .. });
            on_funds(p, received, reorg)
        }
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
    };
    change.filter(|c| {
        c.status != p.status
            || c.exception != p.exception
            || c.received != p.received
            || c.event.is_some()
    })
}

fn on_funds(p: &PaymentFacts, received: U256, reorg: bool) -> Option<Change> {
    if received == p.received {
        return None;
    }
    let overpaid = received > p.amount;
    match p.status {
        // Final for the merchant: later funds only update the amounts.
        PaymentStatus::Confirmed | PaymentStatus::Canceled => Some(Change {
            status: p.status,
            exception: if overpaid && p.status == PaymentStatus::Confirmed {
                Some(PaymentException::Overpaid)
            } else {
                p.exception
            },
            received,
            event: None,
        }),
        PaymentStatus::Expired => {
            if received > p.received && !reorg {
                Some(Change {
                    status: PaymentStatus::Expired,
                    exception: Some(PaymentException::PaidLate),
                    received,
                    event: Some(("payment.late_funds", "late_funds")),
                })
            } else {
                Some(Change {
                    status: PaymentStatus::Expired,
                    exception: p.exception,
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

    fn funds(n: u64) -> Cause {
        Cause::Funds {
            received: U256::from(n),
        }
    }

    #[test]
    fn transfers_are_summed_into_partial_then_processing() {
        let c = apply(&facts(PaymentStatus::Pending, 0), funds(40)).expect("change");
        assert_eq!(c.status, PaymentStatus::PartiallyPaid);
        assert_eq!(c.event, Some(("payment.partially_paid", "funds_received")));
        let c = apply(&facts(PaymentStatus::PartiallyPaid, 40), funds(100)).expect("change");
        assert_eq!(c.status, PaymentStatus::Processing);
        assert_eq!(c.exception, None);
        assert_eq!(c.event, Some(("payment.processing", "funds_received")));
    }

    #[test]
    fn overpayment_is_flagged() {
        let c = apply(&facts(PaymentStatus::Pending, 0), funds(150)).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Processing, Some(PaymentException::Overpaid))
        );
        // More funds while processing: flag only, no event.
        let c = apply(&facts(PaymentStatus::Processing, 100), funds(120)).expect("change");
        assert_eq!(
            (c.exception, c.event),
            (Some(PaymentException::Overpaid), None)
        );
    }

    #[test]
    fn expiry_with_and_without_funds() {
        let mut p = facts(PaymentStatus::PartiallyPaid, 30);
        p.expires_at = Utc::now() - Duration::seconds(1);
        let c = apply(&p, Cause::Clock { now: Utc::now() }).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Expired, Some(PaymentException::Underpaid))
        );
        assert_eq!(c.event, Some(("payment.expired", "expired")));
        let mut p = facts(PaymentStatus::Pending, 0);
        p.expires_at = Utc::now() - Duration::seconds(1);
        let c = apply(&p, Cause::Clock { now: Utc::now() }).expect("change");
        assert_eq!(c.exception, None);
        // Not yet expired, or already fully paid: nothing.
        assert_eq!(
            apply(
                &facts(PaymentStatus::Pending, 0),
                Cause::Clock { now: Utc::now() }
            ),
            None
        );
        let mut p = facts(PaymentStatus::Processing, 100);
        p.expires_at = Utc::now() - Duration::seconds(1);
        assert_eq!(apply(&p, Cause::Clock { now: Utc::now() }), None);
    }

    #[test]
    fn late_funds_after_expiry() {
        let c = apply(&facts(PaymentStatus::Expired, 0), funds(100)).expect("change");
        assert_eq!(
            (c.status, c.exception),
            (PaymentStatus::Expired, Some(PaymentException::PaidLate))
        );
        assert_eq!(c.event, Some(("payment.late_funds", "late_funds")));
    }

    #[test]
    fn reorgs_move_payments_back_with_one_event() {
        let c = apply(
            &facts(PaymentStatus::Processing, 100),
            Cause::Reorg {
                received: U256::ZERO,
            },
        )
        .expect("change");
        assert_eq!(c.status, PaymentStatus::Pending);
        assert_eq!(c.event, Some(("payment.reorged", "reorg")));
        let c = apply(
            &facts(PaymentStatus::Processing, 100),
            Cause::Reorg {
                received: U256::from(60u64),
            },
        )
        .expect("change");
        assert_eq!(c.status, PaymentStatus::PartiallyPaid);
        // A reorg that re-includes the same amount changes nothing.
        assert_eq!(
            apply(
                &facts(PaymentStatus::Processing, 100),
                Cause::Reorg {
                    received: U256::from(100u64)
                }
            ),
            None
        );
    }

    #[test]
    fn confirmation_only_from_processing() {
        let c = apply(&facts(PaymentStatus::Processing, 100), Cause::DeepEnough).expect("change");
        assert_eq!(c.status, PaymentStatus::Confirmed);
        assert_eq!(c.event, Some(("payment.confirmed", "confirmed")));
        for s in [
            PaymentStatus::Pending,
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Confirmed,
            PaymentStatus::Expired,
        ] {
            assert_eq!(apply(&facts(s, 100), Cause::DeepEnough), None, "{s}");
        }
    }

    #[test]
    fn final_states_keep_their_status() {
        let c = apply(&facts(PaymentStatus::Confirmed, 100), funds(130)).expect("change");
        assert_eq!((c.status, c.event), (PaymentStatus::Confirmed, None));
        let c = apply(&facts(PaymentStatus::Canceled, 0), funds(5)).expect("change");
        assert_eq!((c.status, c.event), (PaymentStatus::Canceled, None));
    }
}
