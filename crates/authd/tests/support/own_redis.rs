//! [`OwnRedis`]: a redis-server of a test's own, for the test binaries of `authd` that
//! start, freeze, kill or restart one (one copy, `#[path]`-included by each of them).
// Each binary uses part of it (not every one freezes its server).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long to wait for a server to answer: a liveness deadline, not a speed bound.
const DEADLINE: Duration = Duration::from_secs(10);

/// A redis-server of this test's own on a free loopback port, killed on drop (and by a
/// watchdog once the test binary is gone).
pub struct OwnRedis {
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl OwnRedis {
    /// `None` (a recorded skip) when `redis-server` is not installed.
    pub async fn start() -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            cache_testkit::skip("redis-server is not on PATH");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None, watchdog: None };
        redis.spawn().await;
        Some(redis)
    }

    /// (Re)starts the server on its port, empty.
    pub async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (self.child, self.watchdog) = (Some(child), Some(watchdog));
        let start = Instant::now();
        while !self.pong().await {
            assert!(start.elapsed() < DEADLINE, "redis-server on {} does not answer", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether it answers `PING`.
    pub async fn pong(&self) -> bool {
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").await.is_ok()
            && conn.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([signal, &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// SIGSTOP: a black hole.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL: gone without a word.
    pub fn kill(&mut self) {
        for mut child in [self.child.take(), self.watchdog.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen server ignores SIGTERM but not SIGKILL; resume it anyway.
            self.thaw();
        }
        self.kill();
    }
}
