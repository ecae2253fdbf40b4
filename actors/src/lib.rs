//! Supervision kit.
