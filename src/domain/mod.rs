//! Pure domain logic: amounts, the payment aggregate and its status machine, API keys, what
//! the payer's page shows, and the payment metrics beside the transitions they count. No I/O and no wire format here.

pub mod amount;
pub mod apikey;
pub mod checkout;
pub mod lifecycle;
pub mod metrics;
pub mod payment;
pub mod status;
pub mod sweep;

pub use amount::{format_units, parse_units, AmountError};
pub use payment::{Asset, HistoryEntry, Payment, Transfer};
pub use status::{PaymentException, PaymentStatus};
