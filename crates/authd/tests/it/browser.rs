//! The browser pages, tested two ways against the real app on a random loopback port:
// tidy: long-file one browser walk with its harness (app, chromedriver, mail folder, a hostile page) and the plain-HTTP checks of the pages
//!
//! - **In a real browser**: headless Chromium driven over WebDriver (fantoccini), a
//!   chromedriver the test starts on a free port. The walk: register, open the mailed
//!   verification link, sign in, see this session, sign in from a second browser (its
//!   own cookie jar), end that session from the first, see the second signed out,
//!   change the password, forgot/reset, sign out; plus the cookie's flags as the browser
//!   sees them, a cross-origin form refused (CSRF), and `next` open redirects refused.
//!   Screenshots of every page, desktop (1280x800) and phone (390x844), go to
//!   `target/browser-screenshots/`. Runs on the embedded default (SQLite + memory) and
//!   on PostgreSQL + Redis + memory (`DATABASE_URL`, `REDIS_URL`). Without chromedriver
//!   and chromium it prints `skipped: ...`; with `AUTH_TEST_REQUIRE_SERVICES=1` a skip fails.
//! - **Over plain HTTP** (no browser needed): a page's form post counts in its API
//!   route's limit bucket, open redirects are refused, user input is escaped, and the
//!   pages answer the same text for known and unknown addresses.
//!
//! Every wait is for a condition (an element, a URL, a file) with a liveness deadline;
//! nothing sleeps and hopes, and nothing asserts on wall-clock time.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use authd::settings::Settings;
use authd::{Application, ApplicationBuilder};
use cache_core::ManualClock;
use fantoccini::{Client, ClientBuilder, Locator};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{PASSWORD, Served, app_settings, mail_text, random_email, random_hex, serve};

/// How long any one condition may take before the test fails: a liveness bound, far
/// above what a page load takes, never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(30);
const NEW_PASSWORD: &str = "a brand new passphrase here";
const RESET_PASSWORD: &str = "reset to this other phrase";

// ---------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// SQLite + memory: the embedded default.
    Sqlite,
    /// PostgreSQL + Redis + memory.
    Full,
}

struct App {
    base: String,
    mail: TempDir,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn spawn_app(setup: Setup, tweak: impl FnOnce(&mut Settings)) -> Option<App> {
    let clock = ManualClock::starting_now();
    let mail = TempDir::with_prefix("authd-browser-mail-").unwrap();
    let mut settings = app_settings(mail.path());
    settings.server.ops_listen = None;
    let sql = match setup {
        Setup::Sqlite => cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap(),
        Setup::Full => {
            let url = cache_testkit::service_url("DATABASE_URL")?;
            let redis = cache_testkit::service_url("REDIS_URL")?;
            settings.redis.url = Some(redis.into());
            settings.redis.key_prefix = format!("authd-browser-{}:", random_hex(6));
            settings.redis.command_timeout_ms = 500;
            cache_sql::testing::isolated_postgres(&url, clock.clone()).await.unwrap()
        }
    };
    tweak(&mut settings);
    let builder: ApplicationBuilder =
        Application::builder(settings).clock(clock).sql_store(sql).insecure_fast_hashing();
    let app = builder.build().await.expect("the app builds");
    let Served { base, handle, task, .. } = serve(app);
    Some(App { base, mail, handle, task })
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(self) {
        crate::support::stop_app(self.handle, self.task).await;
    }

    /// The newest mailed link to `to` with `path` (`/verify-email`, `/reset-password`),
    /// as this app's URL: path and `#token=` fragment, waiting for the mail to arrive.
    async fn link_from_mail(&self, to: &str, path: &str) -> String {
        let marker = format!("{path}#token=");
        let until = Instant::now() + DEADLINE;
        loop {
            for entry in std::fs::read_dir(self.mail.path()).unwrap().flatten() {
                let raw = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let text = mail_text(&raw);
                let addressed =
                    text.lines().any(|l| l.trim().eq_ignore_ascii_case(&format!("to: {to}")));
                if let (true, Some(i)) = (addressed, text.find(&marker)) {
                    let token: String = text[i + marker.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect();
                    std::fs::remove_file(entry.path()).unwrap();
                    return self.url(&format!("{marker}{token}"));
                }
            }
            assert!(Instant::now() < until, "no mail to {to} with a {path} link arrived");
            // The mail is written by a spawned task: this waits for that I/O.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A chromedriver of our own on a free port, killed on drop.
struct Driver {
    url: String,
    chromium: PathBuf,
    process: std::process::Child,
    profiles: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Driver {
    /// Starts chromedriver, or skips (`None`) when it or chromium is not installed.
    async fn start() -> Option<Driver> {
        let (Some(driver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium")) else {
            cache_testkit::skip(
                "chromedriver and chromium are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = free_port();
        let process = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let until = Instant::now() + DEADLINE;
        loop {
            let ready = http.get(format!("{url}/status")).send().await;
            if let Ok(r) = ready {
                let status: serde_json::Value = r.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < until, "chromedriver did not come up on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profiles = TempDir::with_prefix("authd-browser-profiles-").unwrap();
        Some(Driver { url, chromium, process, profiles })
    }

    /// A new browser session: its own profile, so its own cookie jar.
    async fn browser(&self, name: &str) -> Browser {
        let profile = self.profiles.path().join(name);
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,800", "--hide-scrollbars", "--no-first-run",
                    "--disable-features=PasswordLeakDetection",
                ],
                "prefs": {"credentials_enable_service": false, "profile.password_manager_enabled": false},
            }
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session opens");
        Browser { client }
    }
}

struct Browser {
    client: Client,
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits for the page whose `<h1>` is `title`.
    async fn expect_page(&self, title: &str) {
        let xpath = format!("//h1[normalize-space()='{title}']");
        if let Err(e) =
            self.client.wait().at_most(DEADLINE).for_element(Locator::XPath(&xpath)).await
        {
            let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let source = self.client.source().await.unwrap_or_default();
            panic!("expected the page {title:?} ({e}); at {url}:\n{source}");
        }
    }

    /// Waits for a message box saying `text`.
    async fn expect_message(&self, role: &str, text: &str) {
        let xpath = format!("//*[@role='{role}' and contains(normalize-space(), \"{text}\")]");
        if let Err(e) =
            self.client.wait().at_most(DEADLINE).for_element(Locator::XPath(&xpath)).await
        {
            let source = self.client.source().await.unwrap_or_default();
            panic!("expected a {role} saying {text:?} ({e}):\n{source}");
        }
    }

    async fn fill(&self, name: &str, value: &str) {
        let input = self.client.find(Locator::Css(&format!("input[name='{name}']"))).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    /// Clicks the button with this exact text (the first one).
    async fn click(&self, text: &str) {
        let xpath = format!("//button[normalize-space()='{text}']");
        self.client.find(Locator::XPath(&xpath)).await.unwrap().click().await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default())
    }

    async fn origin(&self) -> String {
        self.client.current_url().await.unwrap().origin().ascii_serialization()
    }

    async fn sessions(&self) -> usize {
        self.client.find_all(Locator::Css("ul.sessions > li")).await.unwrap().len()
    }

    async fn sign_in(&self, app: &App, email: &str, password: &str) {
        self.goto(&app.url("/login")).await;
        self.expect_page("Sign in").await;
        self.fill("email", email).await;
        self.fill("password", password).await;
        self.click("Sign in").await;
        self.expect_page("Your account").await;
    }

    /// Saves a screenshot of the page at desktop and phone width.
    async fn screenshots(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (suffix, width, height) in [("desktop", 1280, 800), ("phone", 390, 844)] {
            self.client.set_window_size(width, height).await.unwrap();
            // Settled when the viewport has the width asked for.
            let until = Instant::now() + DEADLINE;
            loop {
                let w = self.client.execute("return window.innerWidth", vec![]).await.unwrap();
                if w.as_u64().is_some_and(|w| w <= width.into() && w + 40 >= width.into()) {
                    break;
                }
                assert!(Instant::now() < until, "the window did not resize to {width}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 800).await.unwrap();
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// A page on another origin (another port of 127.0.0.1) whose form posts to the app:
/// what a hostile site would serve. Answers every request with it.
async fn hostile_page(target: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><title>Elsewhere</title></head><body>\
         <form method=\"post\" action=\"{target}\"><button id=\"go\">Win a prize</button></form>\
         </body></html>"
    );
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (origin, task)
}

// ---------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------

async fn walk(setup: Setup) {
    let Some(driver) = Driver::start().await else { return };
    let Some(app) = spawn_app(setup, |_| {}).await else { return };
    let shots = setup == Setup::Sqlite;
    let a = driver.browser("a").await;
    let b = driver.browser("b").await;
    let email = random_email();

    // Signed out: home, then create an account.
    a.goto(&app.url("/")).await;
    a.expect_page("Welcome").await;
    if shots {
        a.screenshots("home").await;
    }
    a.goto(&app.url("/register")).await;
    a.expect_page("Create an account").await;
    if shots {
        a.screenshots("register").await;
    }
    a.fill("name", "Ada Lovelace").await;
    a.fill("email", &email).await;
    a.fill("password", PASSWORD).await;
    a.click("Create account").await;
    a.expect_message("status", "a verification link has been sent").await;
    assert_eq!(a.path().await, "/register?sent=1");

    // The mailed link: the script posts the fragment's token; the address is verified.
    if shots {
        a.goto(&app.url("/verify-email")).await;
        a.expect_page("Verify your email address").await;
        a.screenshots("verify-email").await;
    }
    let link = app.link_from_mail(&email, "/verify-email").await;
    a.goto(&link).await;
    a.expect_message("status", "Your email address is verified").await;
    a.expect_page("Sign in").await;
    if shots {
        a.screenshots("login").await;
    }

    // Sign in: the account lists this session, on this device.
    a.fill("email", &email).await;
    a.fill("password", PASSWORD).await;
    a.click("Sign in").await;
    a.expect_page("Your account").await;
    assert_eq!(a.path().await, "/account");
    assert_eq!(a.sessions().await, 1);
    let current = a.client.find(Locator::Css("ul.sessions > li.current")).await.unwrap();
    let text = current.text().await.unwrap();
    assert!(text.contains("This device") && text.contains("Chrome on Linux"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");

    // The cookie as the browser holds it.
    let cookies = a.client.get_all_cookies().await.unwrap();
    let cookie = cookies.iter().find(|c| c.name() == "session").expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Lax"));
    assert_eq!(cookie.path(), Some("/"));

    // A second browser signs in; the first sees two sessions and ends the other one.
    b.sign_in(&app, &email, PASSWORD).await;
    a.goto(&app.url("/account")).await;
    a.expect_page("Your account").await;
    assert_eq!(a.sessions().await, 2);
    if shots {
        a.screenshots("account").await;
    }
    let other = a.client.find(Locator::Css("ul.sessions > li:not(.current) button")).await.unwrap();
    other.click().await.unwrap();
    a.expect_message("status", "The session has been ended.").await;
    assert_eq!(a.sessions().await, 1);
    // The second browser is signed out on its next page load.
    b.goto(&app.url("/account")).await;
    b.expect_page("Sign in").await;
    b.expect_message("status", "Your session has ended").await;

    // A cross-origin form posting to the app with the cookie is refused: 403, nothing
    // changes (the other browser's new session survives).
    b.sign_in(&app, &email, PASSWORD).await;
    let (elsewhere, hostile) = hostile_page(app.url("/account/sign-out-others")).await;
    a.goto(&elsewhere).await;
    a.client.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    let until = Instant::now() + DEADLINE;
    loop {
        let source = a.client.source().await.unwrap_or_default();
        if source.contains("\"csrf\"") {
            break;
        }
        assert!(Instant::now() < until, "no CSRF refusal:\n{source}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hostile.abort();
    a.goto(&app.url("/account")).await;
    a.expect_page("Your account").await;
    assert_eq!(a.sessions().await, 2, "the cross-origin post changed nothing");

    // Change the password: the other session ends.
    a.fill("current_password", PASSWORD).await;
    a.fill("new_password", NEW_PASSWORD).await;
    a.click("Change password").await;
    a.expect_message("status", "Your password has been changed").await;
    assert_eq!(a.sessions().await, 1);

    // Forgot / reset, from the signed-out browser: every session ends, this one's too.
    b.goto(&app.url("/forgot-password")).await;
    b.expect_page("Forgot your password?").await;
    if shots {
        b.screenshots("forgot-password").await;
    }
    b.fill("email", &email).await;
    b.click("Send reset link").await;
    b.expect_message("status", "a password reset link has been sent").await;
    if shots {
        b.goto(&app.url("/reset-password")).await;
        b.expect_page("Choose a new password").await;
        b.screenshots("reset-password").await;
    }
    let link = app.link_from_mail(&email, "/reset-password").await;
    b.goto(&link).await;
    b.expect_page("Choose a new password").await;
    // The script took the token out of the address bar.
    assert_eq!(b.path().await, "/reset-password");
    b.fill("new_password", RESET_PASSWORD).await;
    b.click("Set password").await;
    b.expect_message("status", "Your password has been changed").await;
    a.goto(&app.url("/account")).await;
    a.expect_page("Sign in").await;
    b.sign_in(&app, &email, RESET_PASSWORD).await;

    // `next`: followed to a path of this site, refused anywhere else.
    for (next, lands) in [
        ("%2F", "/"),
        ("%2F%2Fevil.example%2F", "/account"),
        ("https%3A%2F%2Fevil.example%2F", "/account"),
        ("%2F%5Cevil.example", "/account"),
        ("%2F%09%2Fevil.example", "/account"),
    ] {
        a.goto(&app.url(&format!("/login?next={next}"))).await;
        a.expect_page("Sign in").await;
        a.fill("email", &email).await;
        a.fill("password", RESET_PASSWORD).await;
        a.click("Sign in").await;
        if lands == "/" {
            a.expect_page("Welcome").await;
        } else {
            a.expect_page("Your account").await;
        }
        assert_eq!(a.origin().await, app.base, "next={next}");
        assert_eq!(a.path().await, lands, "next={next}");
        if lands == "/" && shots {
            a.screenshots("home-signed-in").await;
        }
        a.click("Sign out").await;
        a.expect_page("Sign in").await;
    }

    // Sign out: the cookie is gone and the account page asks to sign in.
    b.goto(&app.url("/account")).await;
    b.expect_page("Your account").await;
    b.click("Sign out").await;
    b.expect_message("status", "You are signed out.").await;
    let cookies = b.client.get_all_cookies().await.unwrap();
    assert!(!cookies.iter().any(|c| c.name() == "session"), "{cookies:?}");
    b.goto(&app.url("/account")).await;
    b.expect_page("Sign in").await;
    if shots {
        b.goto(&app.url("/resend-verification")).await;
        b.expect_page("Get a new verification link").await;
        b.screenshots("resend-verification").await;
    }

    a.close().await;
    b.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_walk_sqlite() {
    walk(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_walk_postgres_redis() {
    walk(Setup::Full).await;
}

// ---------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `application/x-www-form-urlencoded` of `form`.
fn urlencoded(form: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect()
    };
    form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Posts a form (as a browser of this origin would).
async fn post_form(app: &App, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(app.url(path))
        .header("origin", &app.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(form))
        .send()
        .await
        .unwrap()
}

/// A page's form post counts in its API route's bucket: with 2 registrations per
/// address, one through the API and one through the page use them up, and the third
/// (either way) is refused with 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_forms_count_in_their_api_routes_bucket() {
    let app = spawn_app(Setup::Sqlite, |s| {
        s.abuse.enabled = true;
        s.abuse.register_per_address = 2;
        s.abuse.forgot_per_address = 1;
    })
    .await
    .unwrap();
    let api = http()
        .post(app.url("/v1/auth/register"))
        .json(&serde_json::json!({"name": "A", "email": random_email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 202);
    let email = random_email();
    let page =
        post_form(&app, "/register", &[("name", "B"), ("email", &email), ("password", PASSWORD)])
            .await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/register?sent=1");
    let over = post_form(
        &app,
        "/register",
        &[("name", "C"), ("email", &random_email()), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let api = http()
        .post(app.url("/v1/auth/register"))
        .json(&serde_json::json!({"name": "D", "email": random_email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);

    // The other way round: the page first, then the API is over.
    let page = post_form(&app, "/forgot-password", &[("email", &email)]).await;
    assert_eq!(page.status(), 303);
    let api = http()
        .post(app.url("/v1/auth/forgot-password"))
        .json(&serde_json::json!({"email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);
    app.stop().await;
}

/// Signs `email` up through the pages and returns the session cookie's value.
async fn sign_up(app: &App, email: &str) -> String {
    let r = post_form(
        app,
        "/register",
        &[("name", "<i>x</i>"), ("email", email), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 303);
    let link = app.link_from_mail(email, "/verify-email").await;
    let token = link.split("#token=").nth(1).unwrap().to_owned();
    let r = post_form(app, "/verify-email", &[("token", &token)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?notice=verified");
    let r = post_form(app, "/login", &[("email", email), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().trim_start_matches("session=").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirects_only_to_paths_of_this_site() {
    let app = spawn_app(Setup::Sqlite, |_| {}).await.unwrap();
    let email = random_email();
    sign_up(&app, &email).await;
    for (next, location) in [
        ("/account?notice=others-ended", "/account?notice=others-ended"),
        ("/", "/"),
        ("//evil.example/", "/account"),
        ("/\\evil.example", "/account"),
        ("https://evil.example/", "/account"),
        ("javascript:alert(1)", "/account"),
        ("/\t/evil.example", "/account"),
        ("", "/account"),
    ] {
        let r =
            post_form(&app, "/login", &[("email", &email), ("password", PASSWORD), ("next", next)])
                .await;
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], location, "{next:?}");
    }
    // The form carries a refused `next` as the default.
    let page = http().get(app.url("/login?next=%2F%2Fevil.example")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"next\" value=\"/account\""), "{html}");
    assert!(!html.contains("evil.example"), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_input_answer_alike_and_set_a_strict_policy() {
    let app = spawn_app(Setup::Sqlite, |_| {}).await.unwrap();
    let known = random_email();
    let cookie = sign_up(&app, &known).await;

    // Every page: HTML, a CSP without inline script, no caching.
    for path in [
        "/",
        "/register",
        "/login",
        "/verify-email",
        "/resend-verification",
        "/forgot-password",
        "/reset-password",
    ] {
        let r = http().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("form-action 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        assert!(html.contains("<html lang=\"en\">") && !html.contains("<script>"), "{path}");
    }
    // The account page shows the user's name as text.
    let account = http()
        .get(app.url("/account"))
        .header("cookie", format!("session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 200);
    let html = account.text().await.unwrap();
    assert!(html.contains("&lt;i&gt;x&lt;/i&gt;") && !html.contains("<i>x</i>"), "{html}");
    // Without a session it sends the visitor to sign in.
    let r = http().get(app.url("/account")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/account");
    // A re-rendered form escapes what was typed.
    let r = post_form(
        &app,
        "/register",
        &[("name", "x"), ("email", "\"><script>alert(1)</script>"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && !html.contains("<script>alert"), "{html}");

    // No enumeration: known and unknown addresses get the same redirect and page.
    for path in ["/register", "/forgot-password", "/resend-verification"] {
        let mut answers = Vec::new();
        for email in [known.as_str(), &random_email()] {
            let r =
                post_form(&app, path, &[("name", "N"), ("email", email), ("password", PASSWORD)])
                    .await;
            assert_eq!(r.status(), 303, "{path}");
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let page = http().get(app.url(&location)).send().await.unwrap().text().await.unwrap();
            answers.push((location, page));
        }
        assert_eq!(answers[0], answers[1], "{path}");
    }
    app.stop().await;
}
