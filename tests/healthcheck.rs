//! `chat-service healthcheck`, the container's health check: the binary run in that mode
//! against a running service, against a port nothing listens on, and against a server that
//! answers an error.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use common::spawn_app;

/// Runs `chat-service healthcheck` as a container would: same variables as the service
/// (`HOST=0.0.0.0`), nothing else from this process's environment.
fn healthcheck(port: u16) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_chat-service"))
        .arg("healthcheck")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "0.0.0.0")
        .env("PORT", port.to_string())
        .output()
        .expect("run chat-service healthcheck")
}

fn port_of(base_url: &str) -> u16 {
    base_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in the base URL")
}

#[test]
fn a_running_service_is_healthy() {
    let app = spawn_app(&[]);
    let out = healthcheck(port_of(&app.base_url));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn nothing_listening_is_unhealthy() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = healthcheck(port);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("http://127.0.0.1:{port}/health")), "stderr: {stderr}");
}

#[test]
fn an_error_answer_is_unhealthy() {
    // What the service answers while its store is down.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head);
        let body = r#"{"status":"error"}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    let out = healthcheck(port);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_unknown_argument_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-service")).arg("serve-please").env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: chat-service [healthcheck]"));
}
