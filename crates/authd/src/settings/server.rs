//! `[server]`: the HTTP listener and the operations listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind (`host:port`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Number of actix-web worker threads; 0 means one per CPU.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Largest accepted JSON request body, in bytes.
    pub json_limit_bytes: usize,
    /// Address of the operations listener (`/metrics`, the detailed `/health/ready`),
    /// kept off the public listener because metrics tell who has an account. Loopback by
    /// default; `""` or `"off"` serves no metrics at all.
    #[serde(deserialize_with = "optional_addr", serialize_with = "optional_addr_out")]
    pub ops_listen: Option<SocketAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shutdown_timeout_secs: 30,
            json_limit_bytes: 16 * 1024,
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// A socket address, or `None` for `""` / `"off"`.
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let raw = String::deserialize(d)?;
    match raw.trim() {
        "" | "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!("{addr:?} is not host:port (or \"off\"): {e}"))
        }),
    }
}

/// `None` as `"off"`, the spelling [`optional_addr`] reads back.
fn optional_addr_out<S: serde::Serializer>(
    addr: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_str("off"),
    }
}
