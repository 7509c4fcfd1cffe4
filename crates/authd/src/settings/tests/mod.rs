//! The settings' tests: layering, secrets from files, transport checks, admin tokens.

// figment's Jail closures return its own (large) error type.
#![allow(clippy::result_large_err)]

mod properties;

use std::net::SocketAddr;

use super::*;
use figment::Jail;
use secrecy::ExposeSecret as _;

#[test]
fn defaults_are_the_embedded_setup_and_valid() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.database.url.expose_secret(), "sqlite://data/authd.db");
    assert!(s.memory.enabled);
    assert_eq!(s.memory.max_entries, 100_000);
    assert_eq!(s.memory.ttl_secs, 30);
    assert!(s.redis.url.is_none());
    assert_eq!(s.mail.transport, MailTransport::File);
    assert_eq!(s.mail.dir, PathBuf::from("data/mail"));
    assert!(!s.cookie.secure);
    assert_eq!(s.public_base_url(), "http://127.0.0.1:8080");
    // Metrics are served on loopback only, never on the public listener by default.
    assert_eq!(s.server.ops_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
    let cfg = s.auth_config();
    let d = ::auth::AuthConfig::default();
    assert_eq!(cfg.session_idle, d.session_idle);
    assert_eq!(cfg.session_absolute, d.session_absolute);
    assert_eq!(cfg.argon2, d.argon2);
}

#[test]
fn the_operations_listener_can_move_or_be_turned_off() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let load = || Settings::from_figment(Settings::figment().unwrap());
        jail.set_env("AUTHD_SERVER__OPS_LISTEN", "10.0.0.5:9100");
        assert_eq!(load().unwrap().server.ops_listen, Some("10.0.0.5:9100".parse().unwrap()));
        jail.set_env("AUTHD_SERVER__OPS_LISTEN", "off");
        assert_eq!(load().unwrap().server.ops_listen, None);
        jail.set_env("AUTHD_SERVER__OPS_LISTEN", "");
        assert_eq!(load().unwrap().server.ops_listen, None);
        jail.set_env("AUTHD_SERVER__OPS_LISTEN", "localhost");
        let e = format!("{:#}", load().unwrap_err());
        assert!(e.contains("ops_listen"), "{e}");
        Ok(())
    });
}

#[test]
fn file_then_conventional_env_then_authd_env() {
    Jail::expect_with(|jail| {
        // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
        jail.clear_env();
        jail.create_file(
            "authd.toml",
            r#"
            public_base_url = "https://auth.example.com/"
            [memory]
            ttl_secs = 10
            fence_ttl_secs = 20
            [redis]
            key_prefix = "file:"
            [mail]
            transport = "smtp"
            [mail.smtp]
            host = "smtp.example.com"
            tls = "tls"
            username = "mailer"
            "#,
        )?;
        jail.set_env("DATABASE_URL", "postgres://app:pw@db/auth");
        jail.set_env("REDIS_URL", "redis://127.0.0.1:6379");
        jail.set_env("AUTHD_MEMORY__TTL_SECS", "5");
        jail.set_env("AUTHD_REDIS__KEY_PREFIX", "env:");
        jail.set_env("AUTHD_COOKIE__SECURE", "true");
        jail.set_env("AUTHD_MAIL__SMTP__PASSWORD", "hunter2hunter2");
        let s = Settings::from_figment(Settings::figment().unwrap()).unwrap();
        assert_eq!(s.public_base_url(), "https://auth.example.com");
        assert_eq!(s.memory.ttl_secs, 5);
        assert_eq!(s.memory.fence_ttl_secs, 20);
        assert_eq!(s.database.url.expose_secret(), "postgres://app:pw@db/auth");
        assert_eq!(s.redis.url.as_ref().unwrap().expose_secret(), "redis://127.0.0.1:6379");
        assert_eq!(s.redis.key_prefix, "env:");
        assert!(s.cookie.secure);
        assert_eq!(s.mail.transport, MailTransport::Smtp);
        assert_eq!(s.mail.smtp.tls, SmtpTlsMode::Tls);
        assert_eq!(s.mail.smtp.password.as_ref().unwrap().expose_secret(), "hunter2hunter2");
        // Secrets never show up in Debug output.
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains(":pw@"), "{debug}");
        Ok(())
    });
}

#[test]
fn authd_config_names_the_file_and_a_missing_one_is_an_error() {
    Jail::expect_with(|jail| {
        // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
        jail.clear_env();
        jail.create_file("other.toml", "[server]\nlisten = \"127.0.0.1:0\"\n")?;
        jail.set_env(CONFIG_ENV, "other.toml");
        let s = Settings::load().unwrap();
        assert_eq!(s.server.listen.port(), 0);
        jail.set_env(CONFIG_ENV, "missing.toml");
        let err = Settings::load().unwrap_err();
        assert!(format!("{err:#}").contains("missing.toml"), "{err:#}");
        Ok(())
    });
}

#[test]
fn bad_settings_are_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("[memory]\nttl_secs = \"ten\"\n", "ttl_secs"),
        ("[memory]\nttl_sec = 10\n", "ttl_sec"),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("[redis]\nurl = \"http://x\"\n", "redis.url"),
        ("[auth]\nargon2_memory_kib = 1024\n", "argon2"),
        ("[auth]\npassword_max_chars = 64\n", "password_max_chars"),
        ("public_base_url = \"example.com\"\n", "public_base_url"),
        ("[admin]\ntoken = \"short\"\n", "admin.token"),
        ("[server]\nlisten = \"nowhere\"\n", "listen"),
    ];
    for (toml, needle) in cases {
        Jail::expect_with(|jail| {
            // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
            jail.clear_env();
            jail.create_file("authd.toml", toml)?;
            let err = Settings::load().unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(needle), "{toml:?}: {text}");
            Ok(())
        });
    }
}

#[test]
fn numeric_looking_secrets_stay_strings() {
    Jail::expect_with(|jail| {
        // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
        jail.clear_env();
        jail.set_env("AUTHD_MAIL__SMTP__USERNAME", "12345");
        jail.set_env("AUTHD_MAIL__SMTP__PASSWORD", "007");
        jail.set_env("AUTHD_REDIS__KEY_PREFIX", "1.50");
        jail.set_env("AUTHD_SERVER__WORKERS", "3");
        jail.set_env("AUTHD_MEMORY__ENABLED", "false");
        let s = Settings::load().unwrap();
        assert_eq!(s.mail.smtp.username.as_deref(), Some("12345"));
        assert_eq!(s.mail.smtp.password.as_ref().unwrap().expose_secret(), "007");
        assert_eq!(s.redis.key_prefix, "1.50");
        assert_eq!(s.server.workers, 3);
        assert!(!s.memory.enabled);
        jail.set_env("AUTHD_SERVER__WORKERS", "many");
        let err = format!("{:#}", Settings::load().unwrap_err());
        assert!(err.contains("AUTHD_SERVER__WORKERS"), "{err}");
        Ok(())
    });
}

// -- Issue 17, item 2: secrets from files ----------------------------------------

/// The admin token of the file tests (strong enough for the start-up check).
const FILE_TOKEN: &str = "q3J9vX+2mB/Lk8ZtR1wYc0pH7sNf5aGdEiUo4TxWl6M=";

/// Writes the four secret files, each with the trailing newline `echo` leaves.
fn write_secret_files(jail: &mut Jail) -> figment::error::Result<()> {
    jail.create_file("db.secret", "postgres://app:from-file@db/auth\n")?;
    jail.create_file("redis.secret", "redis://:from-file@127.0.0.1:6379\r\n")?;
    jail.create_file("smtp.secret", "smtp from file\n")?;
    jail.create_file("admin.secret", &format!("{FILE_TOKEN}\n"))?;
    Ok(())
}

fn assert_file_secrets(s: &Settings) {
    assert_eq!(s.database.url.expose_secret(), "postgres://app:from-file@db/auth");
    let redis = s.redis.url.as_ref().unwrap().expose_secret();
    assert_eq!(redis, "redis://:from-file@127.0.0.1:6379");
    let smtp = s.mail.smtp.password.as_ref().unwrap().expose_secret();
    assert_eq!(smtp, "smtp from file");
    assert_eq!(s.admin.token.as_ref().unwrap().expose_secret(), FILE_TOKEN);
    // Read from files, still secrets: never in Debug or check-config's output.
    for text in [format!("{s:?}"), s.to_redacted_toml().unwrap()] {
        assert!(!text.contains("from-file") && !text.contains(FILE_TOKEN), "{text}");
        assert!(!text.contains("smtp from file"), "{text}");
    }
}

#[test]
fn secrets_come_from_files_named_in_the_environment() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        write_secret_files(jail)?;
        jail.set_env("DATABASE_URL_FILE", "db.secret");
        jail.set_env("REDIS_URL_FILE", "redis.secret");
        jail.set_env("AUTHD_MAIL__TRANSPORT", "smtp");
        jail.set_env("AUTHD_MAIL__SMTP__USERNAME", "mailer");
        jail.set_env("AUTHD_MAIL__SMTP__PASSWORD_FILE", "smtp.secret");
        jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "admin.secret");
        let s = Settings::load().unwrap();
        assert_file_secrets(&s);
        assert_eq!(s.database.url_file.as_deref(), Some(Path::new("db.secret")));

        // The AUTHD_ spelling of the URL files works too.
        jail.clear_env();
        jail.set_env("AUTHD_DATABASE__URL_FILE", "db.secret");
        jail.set_env("AUTHD_REDIS__URL_FILE", "redis.secret");
        let s = Settings::load().unwrap();
        assert_eq!(s.database.url.expose_secret(), "postgres://app:from-file@db/auth");
        assert!(s.redis.url.is_some());
        Ok(())
    });
}

#[test]
fn secrets_come_from_files_named_in_the_config_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        write_secret_files(jail)?;
        jail.create_file(
            "authd.toml",
            r#"
            [database]
            url_file = "db.secret"
            [redis]
            url_file = "redis.secret"
            [mail]
            transport = "smtp"
            [mail.smtp]
            username = "mailer"
            password_file = "smtp.secret"
            [admin]
            token_file = "admin.secret"
            "#,
        )?;
        assert_file_secrets(&Settings::load().unwrap());
        Ok(())
    });
}

#[test]
fn a_secret_set_both_ways_is_refused_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("DATABASE_URL", "DATABASE_URL_FILE", "database.url"),
        ("AUTHD_DATABASE__URL", "DATABASE_URL_FILE", "database.url"),
        ("REDIS_URL", "REDIS_URL_FILE", "redis.url"),
        ("AUTHD_MAIL__SMTP__PASSWORD", "AUTHD_MAIL__SMTP__PASSWORD_FILE", "mail.smtp.password"),
        ("AUTHD_ADMIN__TOKEN", "AUTHD_ADMIN__TOKEN_FILE", "admin.token"),
    ];
    for (var, file_var, key) in cases {
        Jail::expect_with(|jail| {
            jail.clear_env();
            write_secret_files(jail)?;
            let path = match *key {
                "database.url" => "db.secret",
                "redis.url" => "redis.secret",
                "mail.smtp.password" => "smtp.secret",
                _ => "admin.secret",
            };
            jail.set_env(var, "set-directly-0123456789abcdef-XYZ");
            jail.set_env(file_var, path);
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains(&format!("{key} (")), "{err}");
            assert!(err.contains(&format!("{key}_file (")), "{err}");
            // Where each came from, and never a value.
            assert!(err.contains(var) && err.contains(file_var), "{err}");
            assert!(!err.contains("set-directly") && !err.contains("from-file"), "{err}");
            Ok(())
        });
    }
    // In the file and in the environment: both named, with their sources.
    Jail::expect_with(|jail| {
        jail.clear_env();
        write_secret_files(jail)?;
        jail.create_file(
            "authd.toml",
            "[admin]
token_file = \"admin.secret\"\n",
        )?;
        jail.set_env("AUTHD_ADMIN__TOKEN", FILE_TOKEN);
        let err = format!("{:#}", Settings::load().unwrap_err());
        assert!(err.contains("admin.token (environment variable AUTHD_ADMIN__TOKEN)"), "{err}");
        assert!(err.contains("admin.token_file (TOML file"), "{err}");
        Ok(())
    });
}

#[test]
fn missing_or_empty_secret_files_are_refused_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "nowhere.secret");
        let err = format!("{:#}", Settings::load().unwrap_err());
        assert!(err.contains("admin.token_file") && err.contains("nowhere.secret"), "{err}");
        jail.create_file("empty.secret", "\n")?;
        jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "empty.secret");
        let err = format!("{:#}", Settings::load().unwrap_err());
        assert!(err.contains("admin.token_file") && err.contains("empty"), "{err}");
        // The content is validated like a value set directly.
        jail.create_file("weak.secret", "short\n")?;
        jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "weak.secret");
        let err = format!("{:#}", Settings::load().unwrap_err());
        assert!(err.contains("admin.token is too weak"), "{err}");
        Ok(())
    });
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
    assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
    assert_eq!(redact_url("redis://h/0?password=x"), "redis://h/0?***");
}

// -- Issue 11, item 8: transport and defaults ------------------------------------

/// Loads `toml` alone (no environment) and returns the error text, if any.
fn load_error(toml: &str) -> Option<String> {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("authd.toml", toml)?;
        out = Settings::load().err().map(|e| format!("{e:#}"));
        Ok(())
    });
    out
}

#[test]
fn https_with_an_insecure_cookie_is_refused() {
    let err = load_error("public_base_url = \"https://auth.example.com\"\n").expect("refused");
    assert!(err.contains("public_base_url") && err.contains("cookie.secure"), "{err}");
    let ok = "public_base_url = \"https://auth.example.com\"\n[cookie]\nsecure = true\n";
    assert_eq!(load_error(ok), None);
    // The embedded default (plain http, cookie not secure) still starts.
    assert_eq!(load_error(""), None);
    assert_eq!(load_error("public_base_url = \"http://10.0.0.5:8080\"\n"), None);
}

#[test]
fn smtp_credentials_without_tls_are_refused() {
    let smtp = |tls: &str, creds: &str| {
        format!(
            "[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"relay\"\ntls = \"{tls}\"\n{creds}"
        )
    };
    for creds in ["username = \"u\"\n", "username = \"u\"\npassword = \"p\"\n"] {
        let err = load_error(&smtp("none", creds)).expect("refused");
        assert!(err.contains("mail.smtp.tls") && err.contains("mail.smtp.username"), "{err}");
        assert!(!err.contains("= \"p\""), "{err}");
        assert_eq!(load_error(&smtp("starttls", creds)), None);
        assert_eq!(load_error(&smtp("tls", creds)), None);
    }
    // An unauthenticated local relay in plain text is fine.
    assert_eq!(load_error(&smtp("none", "")), None);
}

#[test]
fn redis_tls_settings_are_checked() {
    let with_tls = "[redis]\nurl = \"rediss://127.0.0.1:6380\"\n";
    assert_eq!(load_error(with_tls).is_none(), cache_redis::TLS_COMPILED);
    if !cache_redis::TLS_COMPILED {
        let err = load_error(with_tls).unwrap_or_default();
        assert!(err.contains("redis.url") && err.contains("TLS"), "{err}");
    }
    let ca_plain = "[redis]\nurl = \"redis://h\"\ntls_ca_file = \"/etc/hostname\"\n";
    assert!(load_error(ca_plain).is_some_and(|e| e.contains("redis.tls_ca_file")));
    let ca_missing = "[redis]\nurl = \"rediss://h\"\ntls_ca_file = \"/nonexistent.pem\"\n";
    assert!(load_error(ca_missing).is_some_and(|e| e.contains("redis.tls_ca_file")));
    let ca_alone = "[redis]\ntls_ca_file = \"/etc/hostname\"\n";
    assert!(load_error(ca_alone).is_some_and(|e| e.contains("redis.tls_ca_file")));
}

#[test]
fn weak_admin_tokens_are_refused() {
    for weak in [
        "short",
        "a".repeat(64).as_str(),
        "abababababababababababababababab",
        "0123456789abcdef0123456789abcdef",
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "thequickbrownfoxjumpsoverthelazydog",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        "Password1Password2Password3Password4",
        "zyxwvutsrqponmlkjihgfedcba9876543210",
        "11112222333344445555666677778888aaaa",
    ] {
        assert!(admin_token_weakness(weak).is_some(), "{weak:?} accepted");
        let toml = format!("[admin]\ntoken = \"{weak}\"\n");
        let err = load_error(&toml).expect("refused");
        assert!(err.contains("admin.token"), "{err}");
        assert!(!err.contains(weak), "the token is never echoed: {err}");
    }
    for strong in [
        // openssl rand -hex 16, -hex 32, -base64 32; a UUID v4.
        "3f9c2a7be1d04c58a6e2b71f0c9d8e45",
        "9b1e6a4fd2c87035e0af4b9c1d72e6835f08a3c94be17d260c5a8f3e91b4d7a2",
        "q3J9vX+2mB/Lk8ZtR1wYc0pH7sNf5aGdEiUo4TxWl6M=",
        "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        // A random one with 17 of its 31 pairs equal or consecutive, refused by the bar
        // at half that CI's random draw caught.
        "56833301bb678345d2f565443de788cf",
        // The tokens of the test suites.
        "test-admin-token-0123456789abcdef-XYZ",
        "ops-test-admin-token-0123456789abcdef",
    ] {
        assert_eq!(admin_token_weakness(strong), None, "{strong:?} refused");
    }
}

#[test]
fn random_hex_tokens_pass_the_strength_check() {
    // 32 hex characters: the shortest generated token the docs suggest.
    for _ in 0..2000 {
        let mut bytes = [0u8; 16];
        cache_core::token::fill_random(&mut bytes).unwrap();
        let hex = hex::encode(bytes);
        assert_eq!(admin_token_weakness(&hex), None, "{hex}");
    }
}
