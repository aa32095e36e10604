//! Browser tests: Debian's Chromium driven through WebDriver (chromedriver) against the real app.
//! One chromedriver serves the whole test binary (started on first use, stopped when the binary
//! exits); each test opens its own headless browser session.
//!
//! Chromium and chromedriver are required, never skipped: `make test` installs them
//! (`apt-get install -y chromium chromium-driver`).

mod connections;
mod oauth;
mod pages;
mod screenshots;
mod staff;

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::TestApp;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The shared chromedriver. Its stdin is a pipe held open for the binary's lifetime: when the
/// test binary exits, the pipe closes and the wrapper shell stops chromedriver.
struct Driver {
    port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Child,
}

fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's chromium and chromium-driver; \
                 run `make test` (it installs them) or `apt-get install -y chromium chromium-driver`"
            );
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{CHROMEDRIVER} --port={port} --silent >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid"
            ))
            .stdin(Stdio::piped())
            .spawn()
            .expect("chromedriver starts");
        let mut stdin = child.stdin.take().unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            port,
            _stdin: Mutex::new(stdin),
            _child: child,
        }
    })
}

/// A headless Chromium session pointed at one test app.
pub struct Browser {
    pub client: Client,
    pub base_url: String,
}

impl Browser {
    pub async fn open(app: &TestApp) -> Browser {
        Browser::open_sized(app, 1440, 900).await
    }

    pub async fn open_sized(app: &TestApp, width: u32, height: u32) -> Browser {
        let driver = driver();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--no-first-run", "--disable-extensions",
                         format!("--window-size={width},{height}")],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a Chromium session opens");
        Browser {
            client,
            base_url: app.base_url.clone(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base_url))
            .await
            .unwrap();
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to click: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what leaves the page (a form's button, a link) and waits until the next page has
    /// replaced it. ChromeDriver may answer a click before the navigation it starts, so reading
    /// the URL or a selector right after a plain `click` can see the old page on a loaded machine.
    pub async fn submit(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // A handle to an element of a page that is gone answers "stale element reference".
        while old_page.tag_name().await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "clicking `{css}` did not lead to another page"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("body"))
            .await
            .unwrap();
    }

    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.submit("form[action='/login'] button[type=submit]")
            .await;
    }

    /// The session cookie this browser holds, for posting outside the browser.
    pub async fn session_cookie(&self) -> String {
        let cookie = self
            .client
            .get_named_cookie(billmirror::web::SESSION_COOKIE)
            .await
            .unwrap();
        format!("{}={}", cookie.name(), cookie.value())
    }

    /// The CSRF token the current page's forms carry.
    pub async fn csrf_token(&self) -> String {
        self.client
            .find(Locator::Css("input[name=csrf_token]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
