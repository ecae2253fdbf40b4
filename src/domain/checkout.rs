//! What the payer's page shows: a payment's state as a payer understands it, what is still
//! due, and the payment URIs a wallet reads (EIP-681).

use alloy::primitives::{Address, U256};

use super::{Payment, PaymentException, PaymentStatus};

/// A payment as its payer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayerState {
    /// Nothing received yet.
    Waiting,
    /// Part of the amount arrived; the rest is due.
    PartiallyPaid,
    /// Paid in full; waiting for confirmations.
    Processing,
    /// Confirmed: done.
    Confirmed,
    /// The window closed with nothing received.
    Expired,
    /// The window closed (or a reorganisation took funds) with less than the amount.
    Underpaid,
    /// The merchant canceled it.
    Canceled,
}

impl PayerState {
    /// Of `p`, from its status and exception.
    pub fn of(p: &Payment) -> Self {
        match (p.status, p.exception) {
            (PaymentStatus::Pending, _) => Self::Waiting,
            (PaymentStatus::PartiallyPaid, _) => Self::PartiallyPaid,
            (PaymentStatus::Processing, _) => Self::Processing,
            (PaymentStatus::Confirmed, Some(PaymentException::Underpaid)) => Self::Underpaid,
            (PaymentStatus::Confirmed, _) => Self::Confirmed,
            (PaymentStatus::Expired, _) if p.amount_received_raw.is_zero() => Self::Expired,
            (PaymentStatus::Expired, _) if p.amount_received_raw < p.amount_raw => Self::Underpaid,
            (PaymentStatus::Expired, _) => Self::Expired,
            (PaymentStatus::Canceled, _) => Self::Canceled,
        }
    }

    /// Stable name, used in the page's markup and its status document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::PartiallyPaid => "partially_paid",
            Self::Processing => "processing",
            Self::Confirmed => "confirmed",
            Self::Expired => "expired",
            Self::Underpaid => "underpaid",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the payer can still pay into it.
    pub fn accepts_funds(self) -> bool {
        matches!(self, Self::Waiting | Self::PartiallyPaid)
    }

    /// Whether nothing will change any more (the page stops refreshing).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Expired | Self::Underpaid | Self::Canceled
        )
    }
}

/// What is still due, in raw units (zero once the amount is reached).
pub fn remaining(p: &Payment) -> U256 {
    p.amount_raw.saturating_sub(p.amount_received_raw)
}

/// EIP-681 request for `wei` of the chain's native coin to `to`.
pub fn native_uri(to: Address, chain_id: u64, wei: U256) -> String {
    format!("ethereum:{}@{chain_id}?value={wei}", to.to_checksum(None))
}

/// EIP-681 request for an ERC-20 `transfer` of `amount` raw units of `token` to `to`: the
/// target is the token contract and the payee goes in `address`. Several wallets have
/// misread this form (amounts taken as whole tokens, the contract taken as the payee),
/// so the page offers it as a link and puts the plain address in the QR code by default.
pub fn token_transfer_uri(token: Address, chain_id: u64, to: Address, amount: U256) -> String {
    format!(
        "ethereum:{}@{chain_id}/transfer?address={}&uint256={amount}",
        token.to_checksum(None),
        to.to_checksum(None)
    )
}

/// What goes into the QR code of a token payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenQr {
    /// The deposit address alone; the amount and token are shown beside it. Safe with every
    /// wallet.
    #[default]
    Address,
    /// The EIP-681 `transfer` request (amount included), for merchants whose payers' wallets
    /// read it correctly.
    Eip681,
}

impl TokenQr {
    /// Stable name, as stored and given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Eip681 => "eip681",
        }
    }

    /// Parses [`TokenQr::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "address" => Some(Self::Address),
            "eip681" => Some(Self::Eip681),
            _ => None,
        }
    }
}

/// A merchant's accent colour, `#rrggbb`: the page's buttons and top border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accent([u8; 3]);

impl Accent {
    /// Parses `#rrggbb` (either case).
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix('#')?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Self([byte(0)?, byte(2)?, byte(4)?]))
    }

    /// `rrggbb`, lower case, without the `#`.
    pub fn hex(self) -> String {
        format!("{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }

    /// Relative luminance (WCAG 2).
    fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0[0]) + 0.7152 * channel(self.0[1]) + 0.0722 * channel(self.0[2])
    }

    /// Text colour for a button of this colour, black or white, whichever contrasts more:
    /// any accent a merchant picks stays readable (at least 4.58:1, reached at the
    /// luminance where both contrast equally).
    pub fn text_on(self) -> &'static str {
        let l = self.luminance();
        let on_white = 1.05 / (l + 0.05);
        let on_black = (l + 0.05) / 0.05;
        if on_black > on_white {
            "#000000"
        } else {
            "#ffffff"
        }
    }
}

/// How a merchant's payer pages look and what their token QR codes hold. Nothing else about
/// the merchant is shown to a payer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Branding {
    /// The merchant's display name.
    pub name: String,
    /// Its accent colour (the page's default when unset).
    pub accent: Option<Accent>,
    /// What a token payment's QR code holds.
    pub token_qr: TokenQr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Asset;
    use chrono::Utc;
    use uuid::Uuid;

    fn payment(status: PaymentStatus, amount: u64, received: u64) -> Payment {
        Payment {
            id: Uuid::nil(),
            merchant_id: Uuid::nil(),
            chain: "devchain".into(),
            chain_id: 31337,
            asset: Asset {
                symbol: "ETH".into(),
                contract: None,
                decimals: 18,
            },
            address: Address::ZERO,
            amount_raw: U256::from(amount),
            amount_received_raw: U256::from(received),
            status,
            exception: None,
            confirmations_required: 3,
            confirmations: 0,
            order_id: None,
            metadata: None,
            created_at: Utc::now(),
            expires_at: Utc::now(),
            detected_at: None,
            confirmed_at: None,
            settlement_status: "unswept".into(),
            settlement_tx_hash: None,
            settlement_reason: None,
            return_url: None,
            transfers: vec![],
            history: vec![],
        }
    }

    #[test]
    fn the_payer_sees_what_is_due_and_whether_it_is_over() {
        let p = payment(PaymentStatus::PartiallyPaid, 100, 40);
        assert_eq!(PayerState::of(&p), PayerState::PartiallyPaid);
        assert_eq!(remaining(&p), U256::from(60));
        assert!(PayerState::of(&p).accepts_funds());
        let over = payment(PaymentStatus::Processing, 100, 140);
        assert_eq!(remaining(&over), U256::ZERO);
        assert_eq!(
            PayerState::of(&payment(PaymentStatus::Expired, 100, 0)),
            PayerState::Expired
        );
        let short = payment(PaymentStatus::Expired, 100, 99);
        assert_eq!(PayerState::of(&short), PayerState::Underpaid);
        assert!(PayerState::of(&short).is_final());
        let mut reorged = payment(PaymentStatus::Confirmed, 100, 50);
        reorged.exception = Some(PaymentException::Underpaid);
        assert_eq!(PayerState::of(&reorged), PayerState::Underpaid);
    }

    fn contrast(a: f64, b: f64) -> f64 {
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    #[test]
    fn every_accent_keeps_its_button_text_readable() {
        for s in [
            "#000000", "#ffffff", "#1D4ED8", "#777777", "#767676", "#ffcc00", "#00ff00",
        ] {
            let a = Accent::parse(s).unwrap();
            let text = if a.text_on() == "#000000" { 0.0 } else { 1.0 };
            let ratio = contrast(a.luminance(), text);
            assert!(ratio >= 4.5, "{s}: {ratio}");
        }
        assert_eq!(Accent::parse("#1D4ED8").unwrap().hex(), "1d4ed8");
        for bad in [
            "1d4ed8", "#1d4ed", "#1d4ed8f", "#gggggg", "#+1+2+3", "", "#",
        ] {
            assert!(Accent::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(TokenQr::parse("eip681"), Some(TokenQr::Eip681));
        assert_eq!(
            TokenQr::parse(TokenQr::Address.as_str()),
            Some(TokenQr::Address)
        );
        assert_eq!(TokenQr::parse("EIP681"), None);
    }

    #[test]
    fn payment_uris_follow_eip_681() {
        let to: Address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
            .parse()
            .unwrap();
        let token: Address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
            .parse()
            .unwrap();
        assert_eq!(
            native_uri(to, 1, U256::from(10u64).pow(U256::from(18))),
            "ethereum:0x70997970C51812dc3A010C7d01b50e0d17dc79C8@1?value=1000000000000000000"
        );
        assert_eq!(
            token_transfer_uri(token, 137, to, U256::from(1_500_000u64)),
            "ethereum:0x5FbDB2315678afecb367f032d93F642f64180aa3@137/transfer?\
             address=0x70997970C51812dc3A010C7d01b50e0d17dc79C8&uint256=1500000"
        );
        // The largest amount is written out in full, never rounded or in exponent form.
        assert!(native_uri(to, 31337, U256::MAX).ends_with(&U256::MAX.to_string()));
    }
}
