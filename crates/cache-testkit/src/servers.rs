//! Test servers: redis-server processes (single, TLS-only, a 3-master Cluster, or a
//! master, replica and sentinel) on free loopback ports, for the tests of every crate
//! that start, freeze, kill or restart their own. Behind the `servers` feature, so only
//! the test binaries that need it build it.
//!
//! Every process a test starts is killed when its guard is dropped, including on panic.
//! As a second line of defence each one also gets a watchdog shell that kills it once
//! the test binary has exited, so even a process held by a `static` (never dropped) or a
//! test binary killed mid-run leaves nothing behind. Waiting here is synchronous (a
//! thread sleep between polls): call it before the stores under test run, or from a
//! blocking thread.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Whether tests may start their own redis-server (records a skip when not).
pub fn redis_server_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        crate::skip("redis-server is not on PATH");
    }
    found
}

/// A TCP port nothing listens on now (nor, for Cluster nodes, on port + 10000: the
/// cluster bus).
pub fn free_port(with_bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A new temporary directory, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::with_prefix(format!("redis-test-{tag}-")).unwrap()
}

/// Kills `pid` once this test process is gone.
fn watchdog(pid: u32) -> Child {
    let me = std::process::id();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// One redis-server on a loopback port, killed on drop.
pub struct RedisServer {
    /// Its loopback port.
    pub port: u16,
    dir: TempDir,
    args: Vec<String>,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server with no persistence unless `extra` asks for it; `dir` is its
    /// working directory (RDB files go there).
    pub fn start(tag: &str, extra: &[&str]) -> Self {
        Self::start_on(tag, free_port(false), extra)
    }

    /// Like [`RedisServer::start`], on a given port.
    pub fn start_on(tag: &str, port: u16, extra: &[&str]) -> Self {
        let dir = temp_dir(tag);
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Self { port, dir, args, child: None, watchdog: None };
        server.spawn();
        server
    }

    /// Starts a server whose data directory holds a copy of `rdb` (it loads it).
    pub fn start_from_rdb(tag: &str, rdb: &Path) -> Self {
        let port = free_port(false);
        let dir = temp_dir(tag);
        std::fs::copy(rdb, dir.path().join("dump.rdb")).unwrap();
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.path().display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut server = Self { port, dir, args, child: None, watchdog: None };
        server.spawn();
        server
    }

    /// Starts a server that listens only with TLS (`--port 0 --tls-port`), presenting
    /// `cert`/`key` and not asking clients for certificates. `None` (after recording a
    /// skip) when this redis-server was built without TLS support.
    #[allow(clippy::disallowed_methods)] // See `wait_for_ping`.
    pub fn start_tls(tag: &str, cert: &Path, key: &Path) -> Option<Self> {
        let port = free_port(false);
        let dir = temp_dir(tag);
        let log = dir.path().join("redis.log");
        let args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.path().display().to_string(),
            "--logfile",
            &log.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-server on PATH");
        let mut dog = watchdog(child.id());
        // Ready when the TLS port accepts connections; a server that cannot do TLS exits.
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let _ = dog.kill();
                let _ = dog.wait();
                let mut text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                }
                let lower = text.to_ascii_lowercase();
                if lower.contains("tls") && lower.contains("not supported")
                    || lower.contains("bad directive")
                {
                    crate::skip("this redis-server was built without TLS support");
                    return None;
                }
                panic!("redis-server --tls-port exited ({status}): {text}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not open its TLS port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { port, dir, args, child: Some(child), watchdog: Some(dog) })
    }

    /// The `rediss://` URL of a server started with [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let pid = child.id();
        self.watchdog = Some(watchdog(pid));
        self.child = Some(child);
        wait_for_ping(self.port, Duration::from_secs(10));
        // The port was free when picked; make sure it is our process that answers.
        let info = self.cli(&["info", "server"]);
        assert!(
            info.lines().any(|l| l.trim() == format!("process_id:{pid}")),
            "port {} is served by another process",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, no save.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut dog) = self.watchdog.take() {
            let _ = dog.kill();
            let _ = dog.wait();
        }
    }

    /// Starts the server again on the same port and directory (it loads `dump.rdb` from
    /// there when one exists and `--dbfilename` is unchanged).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing (a black hole).
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process must be resumed to die of anything but SIGKILL; SIGKILL works anyway.
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
        }
        self.kill9();
    }
}

/// Runs `redis-cli -p port args…` and returns its stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli on PATH");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the server on `port` answers `PING` (plain TCP, so starting a server needs
/// no `redis-cli`).
pub fn pong(port: u16) -> bool {
    let timeout = Duration::from_secs(1);
    let Ok(mut conn) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), timeout)
    else {
        return false;
    };
    let mut reply = [0u8; 7];
    conn.set_read_timeout(Some(timeout)).is_ok()
        && conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

// Synchronous on purpose: process management runs before the store exists (or on a
// blocking thread), where a thread sleep is the honest way to wait.
#[allow(clippy::disallowed_methods)]
fn wait_for_ping(port: u16, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if pong(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer PING within {timeout:?}");
}

/// A Redis Cluster of 3 masters (no replicas) on free loopback ports, killed on drop.
pub struct RedisCluster {
    /// The three masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    #[allow(clippy::disallowed_methods)] // See `wait_for_ping`.
    pub fn start() -> Self {
        let mut nodes = Vec::new();
        for i in 0..3 {
            let port = free_port(true);
            let dir = temp_dir(&format!("cluster{i}"));
            let conf = dir.path().join("nodes.conf").display().to_string();
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &dir.path().display().to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut server = RedisServer { port, dir, args, child: None, watchdog: None };
            server.spawn();
            nodes.push(server);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = cli(nodes[0].port, &args);
        assert!(out.contains("[OK]"), "cluster create failed: {out}");
        let start = Instant::now();
        loop {
            let ok = nodes.iter().all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "cluster never reached state ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }

    /// fred's cluster URL naming every node.
    pub fn url(&self) -> String {
        let first = &self.nodes[0];
        let others: Vec<String> =
            self.nodes[1..].iter().map(|n| format!("node=127.0.0.1:{}", n.port)).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", first.port, others.join("&"))
    }
}

/// A master, one replica and one sentinel monitoring them as `mymaster` (quorum 1), on
/// free loopback ports, killed on drop.
pub struct RedisSentinelSet {
    /// The master at start.
    pub master: RedisServer,
    /// Its replica.
    pub replica: RedisServer,
    /// The sentinel monitoring both.
    pub sentinel: RedisServer,
}

/// The service name the sentinel monitors.
pub const SENTINEL_SERVICE: &str = "mymaster";

impl RedisSentinelSet {
    /// Starts the three and waits until the sentinel knows the replica and the replica
    /// is in sync (what a failover needs).
    #[allow(clippy::disallowed_methods)] // See `wait_for_ping`.
    pub fn start(tag: &str) -> Self {
        let master = RedisServer::start(&format!("{tag}-master"), &[]);
        let replica = RedisServer::start(
            &format!("{tag}-replica"),
            &["--replicaof", "127.0.0.1", &master.port.to_string()],
        );
        let port = free_port(false);
        let dir = temp_dir(&format!("{tag}-sentinel"));
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {m} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 5000\n",
                dir = dir.path().display(),
                m = master.port,
            ),
        )
        .unwrap();
        // Sentinel mode: the (rewritable) configuration file must come first.
        let args = vec![conf.display().to_string(), "--sentinel".to_owned()];
        let mut sentinel = RedisServer { port, dir, args, child: None, watchdog: None };
        sentinel.spawn();
        let set = Self { master, replica, sentinel };
        let start = Instant::now();
        loop {
            let known = set.sentinel.cli(&["sentinel", "replicas", SENTINEL_SERVICE]);
            let synced = set.replica.cli(&["info", "replication"]);
            if known.contains(&set.replica.port.to_string())
                && synced.contains("master_link_status:up")
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "sentinel set never ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        set
    }

    /// fred's sentinel URL.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinel.port
        )
    }

    /// The port of the master the sentinel currently names.
    pub fn master_port(&self) -> Option<u16> {
        let out = self.sentinel.cli(&["sentinel", "get-master-addr-by-name", SENTINEL_SERVICE]);
        out.lines().nth(1)?.trim().parse().ok()
    }
}
