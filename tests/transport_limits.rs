//! What a client can make the server hold at the transport level, before and after it
//! authenticates: binary attachments, WebSocket messages past the payload limit, read buffers
//! grown by one large message, slow or silent connections, and many connections from one
//! address. Memory is read from the server's `/proc/<pid>/status` before and after; each test
//! states its bound next to what the unpatched server held.

mod common;

use std::time::Duration;

use common::socket::SocketClient;
use common::{spawn_app, user, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type RawSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MB: usize = 1_000_000;
const COMPANY: &str = "company-limits";

/// An Engine.IO WebSocket with the open packet read; no Socket.IO connect sent.
async fn raw_socket(app: &TestApp) -> RawSocket {
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", app.base_url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket connects");
    match ws.next().await {
        Some(Ok(Ws::Text(open))) if open.starts_with('0') => ws,
        other => panic!("expected the Engine.IO open packet, got {other:?}"),
    }
}

/// Reads until the server closes the connection; false if it is still open after `within`.
async fn closed_by_server(ws: &mut RawSocket, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Ws::Close(_)))) => return true,
            Ok(Some(Ok(Ws::Text(t)))) if t.as_str() == "2" => {
                let _ = ws.send(Ws::text("3")).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A binary event announcing one attachment, as socket.io-client would frame it.
const BINARY_EVENT_HEADER: &str = r#"4510-["upload",{"_placeholder":true,"num":0}]"#;

#[tokio::test]
async fn binary_attachments_close_the_socket_and_are_never_buffered() {
    let app = spawn_app(&[]);
    let before = app.rss();

    // Twenty clients that never authenticate announce an attachment and send nine 1 MB binary
    // frames each. The server used to keep about 9.8 MB per connection (13 → 210 MB).
    let chunk = vec![7u8; MB];
    for _ in 0..20 {
        let mut ws = raw_socket(&app).await;
        ws.send(Ws::text(BINARY_EVENT_HEADER)).await.expect("send header");
        for _ in 0..9 {
            if ws.send(Ws::binary(chunk.clone())).await.is_err() {
                break; // the server already closed the connection
            }
        }
        assert!(closed_by_server(&mut ws, Duration::from_secs(10)).await, "a binary packet must close the socket");
    }
    // A bare binary frame with no packet announcing it is refused the same way.
    let mut ws = raw_socket(&app).await;
    ws.send(Ws::binary(chunk.clone())).await.expect("send frame");
    assert!(closed_by_server(&mut ws, Duration::from_secs(10)).await);

    // An authenticated socket is held to the same rule; other sockets are unaffected.
    let token = user("alice", COMPANY);
    let conversation = app.conversation(&token).await;
    let mut bystander = SocketClient::connect(&app.base_url, &user("bob", COMPANY)).await.expect("connect");
    bystander.join(&conversation).await;
    let mut ws = raw_socket(&app).await;
    ws.send(Ws::text(format!("40{}", json!({ "token": token })))).await.expect("connect packet");
    ws.send(Ws::text(BINARY_EVENT_HEADER)).await.expect("send header");
    let _ = ws.send(Ws::binary(chunk)).await;
    assert!(closed_by_server(&mut ws, Duration::from_secs(10)).await);

    let sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let ack = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "still here" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    bystander.wait_for("message:new", |d| d["message"]["content"] == "still here").await;

    let grown = app.rss().saturating_sub(before);
    println!("after 21 refused binary senders: +{} kB", grown / 1000);
    assert!(grown < 40 * MB, "server grew by {grown} bytes after refusing binary packets");
}

#[tokio::test]
async fn websocket_messages_are_held_to_the_payload_limit() {
    let app = spawn_app(&[]);
    let token = user("carol", COMPANY);
    let conversation = app.conversation(&token).await;

    // Just under the limit is read (and answered: the content is too long for a message).
    let client = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let ack = client
        .emit_ack("message:send", json!({ "conversationId": conversation, "content": "x".repeat(MB - 1000) }))
        .await;
    assert_eq!(ack.data["ok"], false, "{}", ack.data);

    // Over it, the connection is closed before the message is processed.
    let mut ws = raw_socket(&app).await;
    ws.send(Ws::text(format!("40{}", json!({ "token": token })))).await.expect("connect packet");
    let oversized = format!("42{}", json!(["message:send", { "conversationId": conversation, "content": "y".repeat(MB + 200_000) }]));
    let _ = ws.send(Ws::text(oversized)).await;
    assert!(closed_by_server(&mut ws, Duration::from_secs(10)).await, "a 1.2 MB message must close the socket");

    // A fragmented message is held to the limit as a whole: ten clients that never
    // authenticate each try to send 60 MB in 1 MB fragments (the server used to accept them
    // all: 682 MB resident).
    let before = app.rss();
    let fragment = vec![b'z'; MB];
    for _ in 0..10 {
        let mut ws = raw_socket(&app).await;
        let mut sent = 0;
        for i in 0..60 {
            let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            let frame = Frame::message(fragment.clone(), opcode, i == 59);
            if ws.send(Ws::Frame(frame)).await.is_err() {
                break;
            }
            sent += 1;
        }
        assert!(sent < 60 || closed_by_server(&mut ws, Duration::from_secs(10)).await, "60 MB message accepted");
    }
    let grown = app.rss().saturating_sub(before);
    println!("after ten refused 60 MB fragmented messages: +{} kB", grown / 1000);
    assert!(grown < 40 * MB, "server grew by {grown} bytes after refusing fragmented messages");

    // The first client was never disturbed.
    let ack = client.emit_ack("message:send", json!({ "conversationId": conversation, "content": "fine" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
}

#[tokio::test]
async fn read_buffers_shrink_back_after_a_large_message() {
    let app = spawn_app(&[]);
    let token = user("dave", COMPANY);
    let conversation = app.conversation(&token).await;
    let warm = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let _ = warm.emit_ack("message:send", json!({ "conversationId": conversation, "content": "warm up" })).await;
    let before = app.rss();

    // One socket after another sends one 900 kB message and stays open. Each used to keep a
    // read buffer of that size for the rest of its life (100 sockets: +210 MB).
    let big = "b".repeat(900_000);
    let mut open = Vec::new();
    for i in 0..100 {
        // One user each: the refused sends count against the per-user message limit.
        let client = SocketClient::connect(&app.base_url, &user(&format!("dave-{i}"), COMPANY)).await.expect("connect");
        let ack = client.emit_ack("message:send", json!({ "conversationId": conversation, "content": big })).await;
        assert_eq!(ack.data["ok"], false);
        open.push(client);
    }
    let grown = app.rss().saturating_sub(before);
    println!("100 sockets after one 900 kB message each: +{} kB", grown / 1000);
    assert!(grown < 40 * MB, "100 sockets that each received one 900 kB message hold {grown} more bytes");

    let ack = open[0].emit_ack("message:send", json!({ "conversationId": conversation, "content": "small again" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
}

/// Host and port of the app's listener.
fn listen_addr(app: &TestApp) -> std::net::SocketAddr {
    app.base_url.trim_start_matches("http://").parse().expect("socket address")
}

/// A TCP connection to the app from the loopback address `from` (any 127.0.0.0/8 address).
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().unwrap()).expect("bind source address");
    socket.connect(listen_addr(app)).await.expect("connect")
}

/// Reads until the server closes; the bytes read, or `None` if still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(read),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

async fn health_from(app: &TestApp, from: &str) -> String {
    let mut stream = connect_from(app, from).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").await.expect("write");
    let response = read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("answered and closed");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn slow_silent_and_idle_connections_are_closed() {
    let app = spawn_app(&[("HTTP_HEADER_TIMEOUT_MS", "500")]);

    // Silent: connects and never sends a byte.
    let mut silent = connect_from(&app, "127.0.0.1").await;
    assert!(read_until_closed(&mut silent, Duration::from_secs(10)).await.is_some(), "silent connection kept open");

    // Slowloris: one header byte every 100 ms, never finishing the head.
    let mut slow = connect_from(&app, "127.0.0.1").await;
    let started = Instant::now();
    let closed = loop {
        if slow.write_all(b"X").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 64];
        match timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            _ if started.elapsed() > Duration::from_secs(10) => break false,
            _ => {}
        }
    };
    assert!(closed, "a connection sending its head a byte at a time is kept open");

    // Idle keep-alive: one request answered, then nothing.
    let mut idle = connect_from(&app, "127.0.0.1").await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n").await.expect("write");
    let answer = read_until_closed(&mut idle, Duration::from_secs(10)).await.expect("idle keep-alive closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let app = spawn_app(&[("MAX_CONNECTIONS_PER_IP", "20")]);
    // Upgraded WebSockets count as much as plain connections do.
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(raw_socket(&app).await);
    }
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from(&app, "127.0.0.1").await);
    }
    // The 21st from the same address is answered 429 with the contract's error body.
    let mut refused = connect_from(&app, "127.0.0.1").await;
    let answer = read_until_closed(&mut refused, Duration::from_secs(10)).await.expect("refused and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.ends_with(r#"{"error":"Too many connections from this address"}"#), "{answer}");

    // Everyone else is served.
    assert!(health_from(&app, "127.0.0.2").await.starts_with("HTTP/1.1 200"));

    // A slot freed is a slot available again. The server sees the close asynchronously, so
    // wait for the answer that proves it rather than for a fixed time.
    drop(held.pop());
    wait_for_a_free_slot(&app, "127.0.0.1").await;
    drop(sockets);
}

/// `/health` from `from` until it answers 200; panics after a deadline.
async fn wait_for_a_free_slot(app: &TestApp, from: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = health_from(app, from).await;
        if answer.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(Instant::now() < deadline, "no slot was given back: {answer}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn websockets_hold_their_slot_until_they_close() {
    let app = spawn_app(&[("MAX_CONNECTIONS_PER_IP", "2")]);
    let first = raw_socket(&app).await;
    let mut second = raw_socket(&app).await;
    let answer = health_from(&app, "127.0.0.1").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "two open WebSockets left room for more: {answer}");
    second.close(None).await.expect("close");
    drop(second);
    wait_for_a_free_slot(&app, "127.0.0.1").await;
    drop(first);
}
