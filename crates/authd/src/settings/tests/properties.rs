//! Configuration loading from arbitrary TOML: real sections and keys (and some that
//! are not), values of every TOML type. Loading answers settings or an error that
//! names a key of the document, and never panics.

use std::collections::BTreeMap;

use figment::providers::{Format as _, Toml};
use proptest::prelude::*;

use super::*;

const SECTIONS: &[&str] = &[
    "server",
    "database",
    "memory",
    "redis",
    "cookie",
    "mail",
    "auth",
    "log",
    "janitor",
    "analytics",
    "warm_up",
    "admin",
    "security",
    "abuse",
    "mail.smtp",
    "bogus",
];

/// Every field name of the settings (any section's: misplaced ones are errors too).
const KEYS: &[&str] = &[
    "abuse",
    "active_sessions_cache_ms",
    "admin",
    "admin_per_address",
    "analytics",
    "argon2_iterations",
    "argon2_memory_kib",
    "argon2_parallelism",
    "auth",
    "batch_size",
    "block_refresh_ms",
    "block_secs",
    "breaker_failure_threshold",
    "breaker_probe_interval_ms",
    "command_timeout_ms",
    "connect_timeout_ms",
    "cookie",
    "csrf_require_origin",
    "csrf_trusted_origins",
    "database",
    "dir",
    "email_verification_ttl_secs",
    "enabled",
    "fence_ttl_secs",
    "fingerprint",
    "flush_interval_ms",
    "forgot_per_account",
    "forgot_per_address",
    "format",
    "from",
    "guessing_tokens",
    "guessing_window_secs",
    "hash_concurrency",
    "host",
    "interval_secs",
    "ipv6_network_multiplier",
    "ipv6_network_prefix",
    "ipv6_prefix",
    "janitor",
    "journal_poll_ms",
    "json_limit_bytes",
    "key_prefix",
    "listen",
    "log",
    "login_per_account",
    "login_per_address",
    "login_per_address_account",
    "mail",
    "max_batches_per_pass",
    "max_entries",
    "max_lockout_secs",
    "max_pending_users",
    "memory",
    "memory_max_keys",
    "migrate",
    "ops_listen",
    "password",
    "password_max_chars",
    "password_min_chars",
    "password_reset_ttl_secs",
    "pool_size",
    "port",
    "public_base_url",
    "query_timeout_ms",
    "redis",
    "register_per_address",
    "register_window_secs",
    "resend_per_account",
    "resend_per_address",
    "reset_per_address",
    "retention_days",
    "secure",
    "security",
    "server",
    "session_absolute_secs",
    "session_idle_secs",
    "session_update_age_secs",
    "sessions",
    "shutdown_timeout_secs",
    "smtp",
    "stuffing_accounts",
    "stuffing_window_secs",
    "timeout_ms",
    "timeout_secs",
    "tls",
    "tls_ca_file",
    "token",
    "transport",
    "trusted_proxies",
    "ttl_secs",
    "unverified_account_ttl_secs",
    "url",
    "user_agent_max_len",
    "username",
    "warm_up",
    "window_secs",
    "workers",
    "not_a_key",
];

fn value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..100_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        // TOML basic strings escape what JSON escapes (no raw DEL or controls).
        "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop_oneof![
            Just("postgres://u:p@h/db"),
            Just("sqlite::memory:"),
            Just("redis://127.0.0.1:6379"),
            Just("127.0.0.1:0"),
            Just("off"),
            Just("http://x"),
            Just("https://a.example"),
            Just("10.0.0.0/8"),
            Just("smtp"),
            Just("file"),
            Just("json"),
            Just("strict"),
        ]
        .prop_map(|s| format!("\"{s}\"")),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        proptest::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
    })
}

fn document() -> impl Strategy<Value = BTreeMap<String, BTreeMap<String, String>>> {
    let table = proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(str::to_owned),
        value(),
        0..4,
    );
    proptest::collection::btree_map(
        proptest::sample::select(SECTIONS).prop_map(str::to_owned),
        table,
        0..4,
    )
}

fn toml_text(doc: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (section, table) in doc {
        out.push_str(&format!("[{section}]\n"));
        for (key, value) in table {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out
}

proptest! {
    #[test]
    fn any_document_loads_or_names_a_key(doc in document()) {
        let text = toml_text(&doc);
        let figment = figment::Figment::new().merge(Toml::string(&text));
        // A panic fails the case: proptest catches it and shrinks the document.
        if let Err(e) = Settings::from_figment(figment) {
            let message = format!("{e:#}");
            let named = doc.iter().any(|(section, table)| {
                let leaf = section.rsplit('.').next().unwrap_or(section);
                message.contains(leaf) || table.keys().any(|k| message.contains(k.as_str()))
            });
            prop_assert!(named, "{} names no key of:\n{}", message, text);
        }
    }
}
