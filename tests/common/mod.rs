//! Spawns the real `chat-service` binary on a random port for integration tests, and mints
//! the tokens they authenticate with. Readiness is the binary's own "listening" line, never
//! a sleep.
#![allow(dead_code)]

pub mod audit;
pub mod redis;
pub mod socket;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const JWT_SECRET: &str = "integration-test-secret-0123456789";
pub const INTERNAL_TOKEN: &str = "internal-test-token";

pub struct TestApp {
    pub base_url: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Child,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
    /// Every line the server wrote to stderr (its log) so far.
    log: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `log`: done once the server has exited and its last
    /// line is in.
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the app with a fresh data directory and `extra` environment variables.
pub fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    let env: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut app = start(&dir, &env);
    app._temp = Some(temp);
    app
}

/// Starts another node on `other`'s data directory: several nodes, one database.
pub fn spawn_node_sharing(other: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let env: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    start(&other.data_dir, &env)
}

impl TestApp {
    /// Stops this app and starts a new one on the same data directory.
    pub fn restart(mut self) -> TestApp {
        self.kill();
        self.successor()
    }

    /// Stops the app with SIGTERM, waits for it to exit and for the last of its log, and gives
    /// the panic reports it wrote (see `panics`).
    pub fn terminate_reporting_panics(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.sigterm_and_wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        (status, self.panics())
    }

    /// Stops the app with SIGTERM, waits for it to exit, and starts a new one on the same data
    /// directory (and database). Returns the exit status and how long the exit took.
    pub fn terminate_and_restart(mut self) -> (std::process::ExitStatus, std::time::Duration, TestApp) {
        let started = std::time::Instant::now();
        let status = self.sigterm_and_wait();
        (status, started.elapsed(), self.successor())
    }

    /// Stops the app as an orchestrator would (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm_and_wait()
    }

    fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait for chat-service")
    }

    /// A new app on this one's data directory and environment, which takes over the directory.
    fn successor(mut self) -> TestApp {
        let temp = self._temp.take();
        let mut next = start(&self.data_dir, &self.env);
        next._temp = temp;
        next
    }

    /// Kills the server at once (SIGKILL), as a crashed node or a lost machine would go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id, to read its resource use from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in bytes.
    pub fn rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("server is running");
        let kb: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line");
        kb * 1024
    }

    /// Every panic report the server has written to stderr so far: the `panicked at` line
    /// and the message line after it (a panicking task does not stop the process).
    pub fn panics(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let mut reports = Vec::new();
        for (i, line) in log.iter().enumerate() {
            if line.contains("panicked at") {
                reports.push(match log.get(i + 1) {
                    Some(message) => format!("{line} {message}"),
                    None => line.clone(),
                });
            }
        }
        reports
    }

    /// The lines the server has logged so far (stderr), oldest first.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The app's store, opened from the test process: the same SQLite file (WAL lets two
    /// processes use it) or the same MongoDB database. For data the API cannot make, such as
    /// conversations untouched for weeks.
    pub async fn open_store(&self) -> Arc<dyn chat_service::store::Store> {
        use chat_service::store::mongo::{MongoSettings, MongoStore};
        match mongo_uri_for(&self.data_dir) {
            Some(uri) => {
                let settings = MongoSettings { uri: &uri, database: None, pool_size: 4, timeout: std::time::Duration::from_secs(10) };
                Arc::new(MongoStore::connect(&settings).await.expect("open the app's MongoDB database"))
            }
            None => Arc::new(chat_service::store::sqlite::SqliteStore::open(&self.data_dir).expect("open the app's SQLite file")),
        }
    }

    /// The value of an environment variable this app was started with.
    pub fn env_value(&self, key: &str) -> Option<String> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        send(self.http.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        send(self.http.post(self.url(path)).bearer_auth(token).json(&body)).await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        send(self.http.put(self.url(path)).bearer_auth(token).json(&body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        send(self.http.patch(self.url(path)).bearer_auth(token).json(&body)).await
    }

    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        send(self.http.delete(self.url(path)).bearer_auth(token)).await
    }

    /// Creates a conversation as `token`'s user and returns its id.
    pub async fn conversation(&self, token: &str) -> String {
        let (status, body) = self.post(token, "/api/conversations", json!({ "agent_id": "agent-1", "title": "Support" })).await;
        assert_eq!(status, 201, "{body}");
        body["conversation"]["id"].as_str().expect("id").to_string()
    }

    /// Posts a message and returns it.
    pub async fn message(&self, token: &str, conversation: &str, content: &str) -> Value {
        let (status, body) =
            self.post(token, &format!("/api/conversations/{conversation}/messages"), json!({ "content": content })).await;
        assert_eq!(status, 201, "{body}");
        body["message"].clone()
    }
}

/// One scrape of `/metrics`: each sample's value by its series, `name{label="value",...}`
/// exactly as the server wrote it.
pub struct Scrape(pub std::collections::HashMap<String, f64>);

impl Scrape {
    /// The value of a series that must be there.
    pub fn value(&self, series: &str) -> f64 {
        *self.0.get(series).unwrap_or_else(|| panic!("{series} is not in the scrape"))
    }

    /// Whether any series of metric `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.0.keys().any(|k| k.split('{').next() == Some(name))
    }
}

impl TestApp {
    /// Scrapes `/metrics` with `token` (none: unauthenticated) and expects it to answer.
    pub async fn scrape(&self, token: Option<&str>) -> Scrape {
        let mut req = self.http.get(self.url("/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.expect("scrape");
        assert_eq!(res.status(), 200, "/metrics answered {}", res.status());
        let text = res.text().await.expect("body");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
                (series.to_string(), value.parse().unwrap_or_else(|_| panic!("not a value: {l}")))
            })
            .collect();
        Scrape(samples)
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn start(dir: &Path, env: &[(String, String)]) -> TestApp {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-service"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uri) = mongo_uri_for(dir) {
        cmd.env("MONGODB_URI", uri);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start chat-service");
    let (log, log_reader) = forward_stderr(&mut child);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base_url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("chat-service listening on ") {
                    break addr.trim().to_string();
                }
            }
            _ => {
                let status = child.wait().ok();
                panic!("chat-service exited before listening: {status:?}");
            }
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    TestApp {
        base_url,
        data_dir: dir.to_path_buf(),
        _temp: None,
        child,
        env: env.to_vec(),
        http: reqwest::Client::new(),
        log,
        log_reader: Some(log_reader),
    }
}

/// CHAT_TEST_STORE=mongo runs the same tests on MongoDB, one database per data directory.
fn mongo_uri_for(dir: &Path) -> Option<String> {
    if std::env::var("CHAT_TEST_STORE").as_deref() != Ok("mongo") {
        return None;
    }
    let uri = std::env::var("CHAT_TEST_MONGODB_URI").expect("CHAT_TEST_STORE=mongo needs CHAT_TEST_MONGODB_URI");
    let db = format!("chat_rest_{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("x").replace(['.', '-'], "_"));
    Some(format!("{}/{db}", uri.trim_end_matches('/')))
}

/// Copies the server's stderr to ours line by line, straight to the descriptor as an inherited
/// stderr would go (the test harness captures only `eprintln!`), and keeps the lines.
fn forward_stderr(child: &mut Child) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            kept.lock().unwrap().push(line);
        }
    });
    (log, reader)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn sign(claims: Value) -> String {
    sign_with(claims, JWT_SECRET)
}

pub fn sign_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A user of `company`.
pub fn user(id: &str, company: &str) -> String {
    sign(json!({ "sub": id, "company_id": company, "exp": now() + 3600 }))
}

/// A Supabase-style token with the company under `app_metadata`.
pub fn supabase_user(id: &str, company: &str) -> String {
    sign(json!({ "sub": id, "app_metadata": { "company_id": company }, "aud": "authenticated", "exp": now() + 3600 }))
}

pub fn expired(id: &str, company: &str) -> String {
    sign(json!({ "sub": id, "company_id": company, "exp": now() - 600 }))
}

pub fn wrong_signature(id: &str, company: &str) -> String {
    sign_with(json!({ "sub": id, "company_id": company, "exp": now() + 3600 }), "not-the-server-secret-0123456789")
}

pub fn alg_none(id: &str, company: &str) -> String {
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(json!({ "sub": id, "company_id": company, "exp": now() + 3600 }))
    )
}

pub fn no_company(id: &str) -> String {
    sign(json!({ "sub": id, "exp": now() + 3600 }))
}

pub fn widget(conversation: &str, company: &str) -> String {
    sign(json!({ "typ": "widget", "conversation_id": conversation, "company_id": company, "exp": now() + 3600 }))
}

/// Where a test's app keeps uploaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStorage {
    /// The default: a directory under `DATA_DIR`.
    Local,
    /// A fresh bucket on the S3-compatible test server (`CHAT_TEST_S3_ENDPOINT`, started by
    /// scripts/test-services.sh).
    S3,
}

/// The environment that gives an app `storage`; for S3 a new bucket is created first. Returns
/// the variables and, for S3, the bucket's URL.
pub fn file_storage_env(storage: FileStorage) -> (Vec<(String, String)>, Option<String>) {
    if storage == FileStorage::Local {
        return (Vec::new(), None);
    }
    let endpoint = std::env::var("CHAT_TEST_S3_ENDPOINT").expect("S3 tests need CHAT_TEST_S3_ENDPOINT (scripts/test-services.sh start)");
    let bucket = format!("chat-test-{}", uuid_like());
    let (status, _) = s3_request(&endpoint, "PUT", &format!("/{bucket}"));
    assert_eq!(status, 200, "create bucket {bucket} on {endpoint}");
    let env = [
        ("S3_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test-access-key"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-key"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (env, Some(format!("{endpoint}/{bucket}")))
}

/// The keys in an S3 test bucket (`bucket_url` as `file_storage_env` gave it). The test server
/// accepts unsigned requests.
pub fn s3_keys(bucket_url: &str) -> Vec<String> {
    let (endpoint, bucket) = bucket_url.rsplit_once('/').expect("bucket url");
    let (status, body) = s3_request(endpoint, "GET", &format!("/{bucket}?list-type=2"));
    assert_eq!(status, 200, "{body}");
    body.split("<Key>").skip(1).filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string())).collect()
}

/// One plain HTTP/1.1 request to the S3 test server; answers the status and body.
fn s3_request(endpoint: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the S3 test server");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the S3 answer");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}-{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

/// A `multipart/form-data` body with one file part: the `Content-Type` header and the body.
pub fn multipart_file(field: &str, file_name: &str, content_type: Option<&str>, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "chat-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n").into_bytes();
    if let Some(t) = content_type {
        body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl TestApp {
    /// Uploads `bytes` as `file_name` into a conversation; answers the status and body.
    pub async fn upload(&self, token: &str, conversation: &str, file_name: &str, content_type: Option<&str>, bytes: &[u8]) -> (u16, Value) {
        let (header, body) = multipart_file("file", file_name, content_type, bytes);
        let req = self
            .http
            .post(self.url(&format!("/api/conversations/{conversation}/attachments")))
            .bearer_auth(token)
            .header("content-type", header)
            .body(body);
        send(req).await
    }
}

/// An admin of `company` (README "Admins").
pub fn admin(id: &str, company: &str) -> String {
    sign(json!({ "sub": id, "company_id": company, "app_metadata": { "role": "admin" }, "exp": now() + 3600 }))
}
