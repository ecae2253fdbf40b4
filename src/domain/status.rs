//! The payment status machine.

use std::fmt;
use std::str::FromStr;

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Created, nothing received yet.
    Pending,
    /// Received something, less than the amount.
    PartiallyPaid,
    /// Received the amount, not yet deep enough.
    Processing,
    /// Received the amount, every counted transfer deep enough. Final.
    Confirmed,
    /// The window ended before full payment.
    Expired,
    /// Canceled by the merchant before anything arrived.
    Canceled,
}

impl PaymentStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::PartiallyPaid,
        Self::Processing,
        Self::Confirmed,
        Self::Expired,
        Self::Canceled,
    ];

    /// The wire and database name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PartiallyPaid => "partially_paid",
            Self::Processing => "processing",
            Self::Confirmed => "confirmed",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the payment's address is still watched for new funds as part of the
    /// normal lifecycle (expired payments are watched separately for late funds).
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::PartiallyPaid | Self::Processing)
    }

    /// Whether a merchant may cancel from this status, given what was received.
    pub fn can_cancel(self, received_anything: bool) -> bool {
        self == Self::Pending && !received_anything
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, thiserror::Error)]
#[error("unknown payment status")]
pub struct UnknownStatus;

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

/// How a payment deviates from an exact, timely payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentException {
    /// Expired with less than the amount received.
    Underpaid,
    /// Received more than the amount.
    Overpaid,
    /// Funds arrived after expiry.
    PaidLate,
}

impl PaymentException {
    /// The wire and database name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Underpaid => "underpaid",
            Self::Overpaid => "overpaid",
            Self::PaidLate => "paid_late",
        }
    }
}

impl FromStr for PaymentException {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "underpaid" => Ok(Self::Underpaid),
            "overpaid" => Ok(Self::Overpaid),
            "paid_late" => Ok(Self::PaidLate),
            _ => Err(UnknownStatus),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>().ok(), Some(s));
        }
        assert!("paid".parse::<PaymentStatus>().is_err());
    }

    #[test]
    fn cancel_only_while_pending_and_empty() {
        assert!(PaymentStatus::Pending.can_cancel(false));
        assert!(!PaymentStatus::Pending.can_cancel(true));
        for s in PaymentStatus::ALL.into_iter().skip(1) {
            assert!(!s.can_cancel(false), "{s}");
        }
    }
}
