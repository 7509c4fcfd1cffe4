//! Request ids and the access log through the real application (issue 17, item 4): a
//! process-wide tracing subscriber captures every line as JSON, the app trusts
//! `127.0.0.1` as its proxy, and requests come from `127.0.0.1` (the proxy) or
//! `127.0.0.2` (a client, also loopback on Linux). One request at a time, so that every
//! line captured meanwhile is that request's: each must carry its id.

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use authd::Application;
use authd::access::AccessLevel;
use authd::settings::Settings;
use serde_json::{Value, json};

/// Everything logged by this test binary, as JSON lines.
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once (the app's workers run on their own threads,
/// so it must be the global one). `info`, as in production.
fn install_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Bytes captured so far (a mark to read from).
fn mark() -> usize {
    CAPTURED.lock().unwrap().len()
}

/// The lines captured since `from`, parsed.
fn lines_since(from: usize) -> Vec<Value> {
    let captured = CAPTURED.lock().unwrap();
    String::from_utf8_lossy(&captured[from..])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The request id a line was logged under, if any.
fn id_of(line: &Value) -> Option<&str> {
    line["span"]["request_id"].as_str()
}

/// Waits (at most 5 s) until a line with `message` has been captured since `from`,
/// for work the request finishes in the background (the mail).
async fn wait_for(from: usize, message: &str) -> Vec<Value> {
    for _ in 0..100 {
        let lines = lines_since(from);
        if lines.iter().any(|l| l["fields"]["message"] == message) {
            // Whatever else that work logs right after.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return lines_since(from);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {message:?} line in {:#?}", lines_since(from));
}

/// A client connecting from `local`.
fn client(local: &str) -> reqwest::Client {
    let local: IpAddr = local.parse().unwrap();
    reqwest::Client::builder().local_address(local).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_from_trusted_proxies_echoed_and_on_every_line() {
    install_capture();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.ops_listen = None;
    settings.database.url = format!("sqlite://{}", dir.path().join("auth.db").display()).into();
    settings.mail.dir = dir.path().join("mail");
    settings.janitor.enabled = false;
    settings.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    settings.log.access_level = AccessLevel::Info;
    let app = Application::builder(settings).insecure_fast_hashing().build().await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let (proxy, stranger) = (client("127.0.0.1"), client("127.0.0.2"));
    // The server logs its own start when first polled: let that pass before the first
    // mark.
    proxy.get(format!("{base}/health/live")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let register = |http: &reqwest::Client, n: u32, id: Option<&str>| {
        let mut req = http.post(format!("{base}/v1/auth/register")).json(&json!({
            "name": "Ada",
            "email": format!("ada{n}@example.com"),
            "password": "correct horse battery staple",
        }));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };

    // 1. From the trusted proxy: its id is kept, echoed, and on every line of the
    //    request, the mail written in the background included.
    let from = mark();
    let resp = register(&proxy, 1, Some("proxy-req-42")).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "proxy-req-42");
    let lines = wait_for(from, "mail written").await;
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        assert_eq!(id_of(line), Some("proxy-req-42"), "{line}");
    }
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "authd::access").collect();
    assert_eq!(access.len(), 1, "{lines:#?}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["route"], "/v1/auth/register");
    assert_eq!(fields["status"], 202);
    assert_eq!(fields["method"], "POST");
    assert!(fields["elapsed_ms"].as_f64().is_some(), "{fields}");
    assert_eq!(access[0]["level"], "INFO");

    // 2. From anyone else, the id they send is replaced by a generated one.
    let from = mark();
    let resp = register(&stranger, 2, Some("client-chosen")).await.unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "client-chosen");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let lines = wait_for(from, "mail written").await;
    for line in &lines {
        assert_eq!(id_of(line), Some(id.as_str()), "{line}");
    }
    let text = String::from_utf8_lossy(&CAPTURED.lock().unwrap()[from..]).into_owned();
    assert!(!text.contains("client-chosen"), "{text}");

    // 3. A trusted proxy's id that is not a plain token (log forging) is replaced too,
    //    and without an id one is generated.
    for sent in [Some("x\" level=ERROR"), None] {
        let mut req = proxy.get(format!("{base}/health/live"));
        if let Some(sent) = sent {
            req = req.header("x-request-id", sent);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-request-id"].len(), 32);
    }

    // 4. The access line names the route pattern, never the path's values, the query,
    //    the cookie or a token; errors get an id too.
    let from = mark();
    let resp = stranger
        .delete(format!("{base}/v1/sessions/secret-path-value?token=secret-query"))
        .header("cookie", "session=secret-cookie")
        .header("authorization", "Bearer secret-bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let resp = stranger.get(format!("{base}/nowhere/secret-404")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"].len(), 32);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = lines_since(from);
    let routes: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "authd::access")
        .map(|l| &l["fields"]["route"])
        .collect();
    assert_eq!(routes, [&json!("/v1/sessions/{id}"), &json!("(unmatched)")], "{lines:#?}");
    assert_eq!(id_of(&lines[0]), Some(id.as_str()));
    let text = String::from_utf8_lossy(&CAPTURED.lock().unwrap()[from..]).into_owned();
    for secret in
        ["secret-path-value", "secret-query", "secret-cookie", "secret-bearer", "secret-404"]
    {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }

    // Idle keep-alive connections would hold the graceful stop.
    drop((proxy, stranger));
    handle.stop(true).await;
    server.await.unwrap().unwrap();
}
