//! `chat-service` nodes for the examples that run several: each started on a free port in a
//! shared data directory and Redis namespace, and stopped when dropped; plus tokens signed with
//! the secret they run with.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

pub const SECRET: &str = "example-nodes-secret-0123456789";

pub struct Node {
    pub url: String,
    child: Child,
}

impl Node {
    /// Kills the node at once (SIGKILL), as a crashed process or a lost machine would go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resolves the server binary to an absolute path: the nodes run in their data directory.
pub fn server_binary(bin: &str) -> String {
    let bin = std::fs::canonicalize(bin).unwrap_or_else(|e| panic!("{bin}: {e} (build it, or pass --bin)"));
    bin.to_str().expect("utf-8 path").to_string()
}

/// Starts a node on `data_dir` and the Redis namespace `prefix`, with `extra` variables.
pub fn start_node(bin: &str, data_dir: &std::path::Path, redis: &str, prefix: &str, extra: &[(&str, &str)]) -> Node {
    let mut cmd = Command::new(bin);
    cmd.current_dir(data_dir)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET", SECRET)
        .env("REDIS_URL", redis)
        .env("REDIS_PREFIX", prefix)
        .env("LEGACY_EVENTS", "false")
        .env("SOCKET_MESSAGE_LIMIT", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {bin}: {e} (build it, or pass --bin)"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("chat-service listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => panic!("node exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Node { url, child }
}

/// A user token of `company`, signed with the nodes' secret.
pub fn token(user: &str, company: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "company_id": company, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}
