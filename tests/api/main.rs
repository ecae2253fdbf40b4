//! API integration tests against a real PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod alerting;
mod auth;
mod browser;
mod chain;
mod chaos;
mod checkout;
mod dev;
mod failover;
mod hardening;
mod health;
mod helpers;
mod hostile;
mod integrity;
mod key_cache;
mod leases;
mod observability;
mod payments;
mod pgwire;
mod proxy;
mod round_trips;
mod signer;
mod supervision;
mod sweeping;
mod webhooks;
