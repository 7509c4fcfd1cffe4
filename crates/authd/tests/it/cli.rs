//! The `authd` binary's command line, run as an operator would run it: the built
//! binary, in a fresh directory, with an empty environment (so that the test machine's
//! `DATABASE_URL`, `REDIS_URL` or `AUTHD_*` cannot leak in). Checks what each command
//! prints, which exit status it ends with (`docs/operations.md`), and that `--help`,
//! `--version` and `check-config` leave the directory as they found it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An `authd` command in `dir` with nothing but `env` in its environment.
fn authd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the authd binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| PathBuf::from(entry.unwrap().file_name()))
        .collect();
    names.sort();
    names
}

#[test]
fn help_prints_usage_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["-h"], &["help"], &["serve", "--help"], &["check-config", "-h"]]
    {
        let out = authd(dir.path(), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage: authd"), "{args:?}: {}", stdout(&out));
    }
    let help = stdout(&authd(dir.path(), &["--help"], &[]));
    for command in ["serve", "migrate", "check-config", "cleanup", "Exit status"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    // No ./data, no database, no mail folder.
    assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn version_prints_the_version() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--version", "-V"] {
        let out = authd(dir.path(), &[flag], &[]);
        assert!(out.status.success());
        assert_eq!(stdout(&out).trim(), format!("authd {}", env!("CARGO_PKG_VERSION")));
    }
    assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = authd(dir.path(), &["serv"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn check_config_names_a_misspelled_key_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.toml"), "[memory]\nttl_sec = 10\n").unwrap();
    let out = authd(dir.path(), &["check-config"], &[("AUTHD_CONFIG", "prod.toml")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ttl_sec") && err.contains("memory"), "{err}");
    assert_eq!(stdout(&out), "");

    // The same typo in a variable names the variable.
    let out = authd(dir.path(), &["check-config"], &[("AUTHD_MEMORY__TTL_SEC", "10")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("AUTHD_MEMORY__TTL_SEC"), "{}", stderr(&out));

    // A value that fails validation names its key too.
    let out = authd(dir.path(), &["check-config"], &[("DATABASE_URL", "mysql://x")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("database.url"), "{}", stderr(&out));

    assert_eq!(entries(dir.path()), vec![PathBuf::from("prod.toml")]);
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let token = "q3J9vX+2mB/Lk8ZtR1wYc0pH7sNf5aGdEiUo4TxWl6M=";
    let out = authd(
        dir.path(),
        &["check-config"],
        &[
            // Unreachable on purpose: check-config must not try.
            ("DATABASE_URL", "postgres://app:hunter2@192.0.2.1:5432/auth"),
            ("REDIS_URL", "redis://:redispw@192.0.2.1:6379"),
            ("AUTHD_ADMIN__TOKEN", token),
            ("AUTHD_MAIL__TRANSPORT", "smtp"),
            ("AUTHD_MAIL__SMTP__USERNAME", "mailer"),
            ("AUTHD_MAIL__SMTP__PASSWORD", "smtp-secret"),
            ("AUTHD_MEMORY__TTL_SECS", "10"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for secret in ["hunter2", "redispw", token, "smtp-secret"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    let printed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(printed["database"]["url"].as_str(), Some("postgres://app:***@192.0.2.1:5432/auth"));
    assert_eq!(printed["redis"]["url"].as_str(), Some("redis://:***@192.0.2.1:6379"));
    assert_eq!(printed["admin"]["token"].as_str(), Some(authd::settings::REDACTED));
    assert_eq!(printed["mail"]["smtp"]["password"].as_str(), Some(authd::settings::REDACTED));
    assert_eq!(printed["mail"]["smtp"]["username"].as_str(), Some("mailer"));
    // Every layer: the variable over the default, defaults in full.
    assert_eq!(printed["memory"]["ttl_secs"].as_integer(), Some(10));
    assert_eq!(printed["memory"]["max_entries"].as_integer(), Some(100_000));
    assert_eq!(printed["server"]["ops_listen"].as_str(), Some("127.0.0.1:9464"));
    assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());

    // Without secrets the output is a configuration file that loads back to the same.
    let out = authd(dir.path(), &["check-config"], &[("AUTHD_SERVER__OPS_LISTEN", "off")]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.path().join("printed.toml"), stdout(&out)).unwrap();
    let again = authd(dir.path(), &["check-config"], &[("AUTHD_CONFIG", "printed.toml")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&out));
    assert_eq!(entries(dir.path()), vec![PathBuf::from("printed.toml")]);
}

#[test]
fn migrate_and_cleanup_work_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        // Idempotent.
        let out = authd(dir.path(), &["migrate"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("migrations applied"), "{}", stderr(&out));
        // Logs into a pipe carry no colour codes.
        assert!(!stderr(&out).contains('\x1b'), "{:?}", stderr(&out));
    }
    assert!(dir.path().join("data/authd.db").is_file());

    let out = authd(dir.path(), &["cleanup"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed 0 expired sessions"), "{}", stderr(&out));
    let out = authd(dir.path(), &["cleanup", "--json", "--batch-size", "10"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["passes"], 1);
    assert_eq!(report["totals"]["complete"], true);

    // An invalid override is a configuration error.
    let out = authd(dir.path(), &["cleanup", "--batch-size", "0"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("janitor.batch_size"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_store_at_start_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let env = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("AUTHD_DATABASE__CONNECT_TIMEOUT_MS", "1000"),
        ("AUTHD_SERVER__LISTEN", "127.0.0.1:0"),
        ("AUTHD_SERVER__OPS_LISTEN", "off"),
    ];
    for command in ["migrate", "serve", "cleanup"] {
        let out = authd(dir.path(), &[command], &env);
        assert_eq!(out.status.code(), Some(69), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("127.0.0.1:1"), "{command}: {err}");
    }
}

#[test]
fn a_port_in_use_exits_71() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (listen, ops, key) in [
        (addr.as_str(), "off", "server.listen"),
        ("127.0.0.1:0", addr.as_str(), "server.ops_listen"),
    ] {
        let env = [("AUTHD_SERVER__LISTEN", listen), ("AUTHD_SERVER__OPS_LISTEN", ops)];
        let out = authd(dir.path(), &["serve"], &env);
        assert_eq!(out.status.code(), Some(71), "{}", stderr(&out));
        assert!(stderr(&out).contains(key), "{}", stderr(&out));
    }
}

#[test]
// A plain blocking test: no async worker to block.
#[allow(clippy::disallowed_methods)]
fn without_a_command_it_serves_until_sigterm() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().unwrap();
    // A port free a moment ago; the server binds it right away.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_authd"))
        .current_dir(dir.path())
        .env_clear()
        .env("AUTHD_SERVER__LISTEN", &listen)
        .env("AUTHD_SERVER__OPS_LISTEN", "off")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..200 {
        if let Ok(mut stream) = std::net::TcpStream::connect(&listen) {
            stream.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").unwrap();
            stream.read_to_string(&mut answer).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    // The embedded default: SQLite under ./data.
    assert!(dir.path().join("data/authd.db").is_file());
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The binary's stderr, line by line, over a channel (a thread reads the pipe).
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let pipe = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the log line containing `needle` (a liveness bound only) and returns it.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needle:?}: {e}"),
        }
    }
}

/// A served authd on port 0 (operations listener on too: its stop follows the public
/// listener's), logging at `info` into a pipe: the child, its reaper (SIGKILL if the test
/// fails before the process has exited: no stray server) and its stderr lines.
fn spawn_logged(
    dir: &Path,
) -> (std::process::Child, KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authd"))
        .current_dir(dir)
        .env_clear()
        .env("AUTHD_SERVER__LISTEN", "127.0.0.1:0")
        .env("AUTHD_SERVER__OPS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reaper = KillOnDrop(child.id());
    let lines = stderr_lines(&mut child);
    (child, reaper, lines)
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &std::process::Child) {
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
}

/// Waits for `child` to exit (bounded: a hang is a shutdown defect) and disarms its
/// reaper: exited and reaped, its pid is no longer ours to kill.
fn exit_status(mut child: std::process::Child, reaper: KillOnDrop) -> std::process::ExitStatus {
    let (tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(tx.send(child.wait())));
    let status = exited
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("authd exits after SIGTERM")
        .unwrap();
    std::mem::forget(reaper);
    status
}

/// SIGTERM while a request is in flight (its head read, half of its body sent): the
/// listener closes, the request is still read to its end and answered, and the process
/// exits 0 (`docs/operations.md`, "Shutdown").
#[test]
// A plain blocking test: no async worker to block.
#[allow(clippy::disallowed_methods)]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().unwrap();
    let (child, reaper, lines) = spawn_logged(dir.path());
    // The port 0 picked: from the start-up line, once the listener is bound.
    let listening = wait_for_line(&lines, "authd listening");
    let addr = listening
        .split_whitespace()
        .find_map(|word| word.strip_prefix("address="))
        .expect("the start-up line names the address")
        .to_owned();

    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    // Once a later connection is answered, the acceptor (one thread) has counted this one
    // in its worker: a stop before that could find the worker idle (see
    // `api::graceful_shutdown_finishes_in_flight_requests`). Open until the listener closes.
    let mut witness = std::net::TcpStream::connect(&addr).unwrap();
    witness.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    witness.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = witness.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Well-formed JSON of the wrong shape: the handler cannot answer before it has the
    // whole body, and then answers 400 without hashing a password.
    let body = r#"{"email": "someone@example.com", "password": 12345678901234567890}"#;
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // `100 Continue`: the server has read the head, the request is in flight.
    let continue_line = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut interim = vec![0u8; continue_line.len()];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(interim, continue_line, "{}", String::from_utf8_lossy(&interim));
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(first).unwrap();

    sigterm(&child);
    wait_for_line(&lines, "SIGTERM received");
    wait_for_line(&lines, "accept thread stopped");
    // The listener is closed (a liveness deadline only: it closes just after that line).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "the listener still accepts after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(witness);

    // The rest of the body, after the stop: the request is read and answered in full.
    stream.write_all(rest).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("invalid_input"), "{response}");

    wait_for_line(&lines, "authd stopped");
    assert_eq!(exit_status(child, reaper).code(), Some(0));
}

/// SIGTERM as soon as the start-up line says the port is bound, before any request: a
/// graceful stop and exit 0, never the signal's default action. authd registers its
/// handlers before it binds (`app::signals`); actix-server's own were registered only
/// once the server was first polled, and a signal before that killed the process.
#[test]
// A plain blocking test: no async worker to block.
#[allow(clippy::disallowed_methods)]
fn sigterm_right_after_the_start_is_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (child, reaper, lines) = spawn_logged(dir.path());
    wait_for_line(&lines, "authd listening");
    sigterm(&child);
    wait_for_line(&lines, "SIGTERM received");
    wait_for_line(&lines, "authd stopped");
    let status = exit_status(child, reaper);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Sends SIGKILL to a child process when dropped (a failing test's server).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        drop(Command::new("kill").args(["-KILL", &self.0.to_string()]).status());
    }
}
