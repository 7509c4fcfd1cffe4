//! The application layer: composes the stores the settings choose ([`stores`]), the
//! abuse policy over them ([`abuse`]), the operations side (`crate::ops::Ops`) and the
//! routes into the running service ([`startup`]) with its stop signals ([`signals`]),
//! and the one-off commands that compose the same stores ([`cleanup`]). Nothing below
//! imports this layer.

pub mod abuse;
pub mod cleanup;
pub mod failure;
pub mod signals;
pub mod startup;
pub mod stores;
