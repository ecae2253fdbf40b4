//! Pure domain logic: amounts, the payment status machine, API keys. No I/O here.

pub mod amount;
pub mod apikey;
pub mod lifecycle;
pub mod metrics;
pub mod payment;
pub mod status;

pub use amount::{format_units, parse_units, AmountError};
pub use payment::{Asset, HistoryEntry, Payment, PaymentObject, Transfer};
pub use status::{PaymentException, PaymentStatus};
