//! Every word the payer's page says, in one place, so that a translation is one more
//! table. English is the only table so far.

/// The page's words in one language.
pub struct Strings {
    /// `lang` attribute.
    pub lang: &'static str,
    /// Title prefix: "Pay {merchant}".
    pub pay: &'static str,
    /// Label of the amount still due.
    pub amount_due: &'static str,
    /// Label of the requested amount once nothing more is due.
    pub amount: &'static str,
    /// Label of the network line.
    pub network: &'static str,
    /// Label of the deposit address.
    pub address: &'static str,
    /// Copy buttons.
    pub copy_amount: &'static str,
    /// Copy buttons.
    pub copy_address: &'static str,
    /// Said once something was copied.
    pub copied: &'static str,
    /// Caption under the QR code.
    pub scan: &'static str,
    /// QR code's accessible name: "{scan_label} {amount} {symbol} on {network} to {address}".
    pub qr_label: &'static str,
    /// Link opening a wallet with the payment request.
    pub open_wallet: &'static str,
    /// Link for a token transfer request (EIP-681), offered beside the plain address.
    pub open_wallet_transfer: &'static str,
    /// Label of the countdown.
    pub expires_in: &'static str,
    /// Label of the confirmation count.
    pub confirmations: &'static str,
    /// Link back to the merchant once the payment is confirmed.
    pub return_to_merchant: &'static str,
    /// Said with JavaScript off.
    pub refresh_note: &'static str,
    /// Per state.
    pub waiting: &'static str,
    /// Per state.
    pub partially_paid: &'static str,
    /// Per state.
    pub processing: &'static str,
    /// Per state.
    pub confirmed: &'static str,
    /// Per state.
    pub expired: &'static str,
    /// Per state.
    pub underpaid: &'static str,
    /// Per state.
    pub canceled: &'static str,
    /// The not-found page.
    pub not_found_title: &'static str,
    /// The not-found page.
    pub not_found_text: &'static str,
}

/// English.
pub const EN: Strings = Strings {
    lang: "en",
    pay: "Pay",
    amount_due: "Amount due",
    amount: "Amount",
    network: "Network",
    address: "Deposit address",
    copy_amount: "Copy amount",
    copy_address: "Copy address",
    copied: "Copied",
    scan: "Scan with your wallet",
    qr_label: "Payment request:",
    open_wallet: "Open in wallet",
    open_wallet_transfer: "Open as a token transfer request (EIP-681)",
    expires_in: "Time left",
    confirmations: "Confirmations",
    return_to_merchant: "Return to the merchant",
    refresh_note: "This page refreshes itself every 10 seconds.",
    waiting: "Waiting for your payment.",
    partially_paid: "Part of the amount arrived. Please send the rest.",
    processing: "Payment received. Waiting for confirmations.",
    confirmed: "Payment confirmed. Thank you!",
    expired: "This payment request has expired.",
    underpaid:
        "Less than the amount arrived before the request closed. Please contact the merchant.",
    canceled: "This payment request was canceled.",
    not_found_title: "Payment not found",
    not_found_text: "There is no payment at this address.",
};

impl Strings {
    /// The sentence for a payer state (by its stable name).
    pub fn state(&self, state: crate::domain::checkout::PayerState) -> &'static str {
        use crate::domain::checkout::PayerState as S;
        match state {
            S::Waiting => self.waiting,
            S::PartiallyPaid => self.partially_paid,
            S::Processing => self.processing,
            S::Confirmed => self.confirmed,
            S::Expired => self.expired,
            S::Underpaid => self.underpaid,
            S::Canceled => self.canceled,
        }
    }
}
