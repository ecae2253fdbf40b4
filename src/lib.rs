//! cTrip Gateway: a self-hosted, multi-chain EVM crypto payment gateway.
//!
//! Rooms: [`config`] loads settings, [`api`] speaks HTTP, [`domain`] holds the pure rules,
//! [`store`] runs SQL, [`wallet`] derives addresses, [`telemetry`] logs and counts.

pub mod api;
pub mod app;
pub mod chain;
pub mod cli;
pub mod config;
pub mod custody;
pub mod devnet;
pub mod domain;
pub mod models;
pub mod ops;
pub mod store;
pub mod supervision;
pub mod telemetry;
pub mod wallet;
pub mod webhook;
pub mod worker;
