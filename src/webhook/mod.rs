//! Webhook delivery.

pub mod dispatcher;
