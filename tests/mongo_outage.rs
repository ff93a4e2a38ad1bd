//! MongoDB going away while the service runs: requests answer 503 with a clear error, the
//! process stays up, and it recovers by itself once the database is back. The test runs its
//! own MongoDB wire server (`CHAT_TEST_MONGOD_BIN`, provided by scripts/test-services.sh) so
//! it can stop and restart it.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::socket::SocketClient;
use common::{spawn_app, user};
use serde_json::json;

struct MongoServer {
    child: Child,
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the wire server on `port` and returns once it accepts connections.
fn start_mongo(port: u16) -> MongoServer {
    let bin = std::env::var("CHAT_TEST_MONGOD_BIN")
        .expect("CHAT_TEST_MONGOD_BIN is not set: run scripts/test.sh, or scripts/test-services.sh start and source .test-services.env");
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", ":memory:", "--standalone"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the MongoDB wire server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "MongoDB wire server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    MongoServer { child }
}

#[tokio::test]
async fn outage_answers_503_and_recovers_by_itself() {
    let port = free_port();
    let mongo = start_mongo(port);
    let uri = format!("mongodb://127.0.0.1:{port}/outage");
    let app = spawn_app(&[("MONGODB_URI", uri.as_str()), ("MONGODB_TIMEOUT_MS", "1000")]);
    let alice = user("alice", "acme");

    let conversation = app.conversation(&alice).await;
    app.message(&alice, &conversation, "before the outage").await;
    let (status, health) = app.get(&alice, "/health").await;
    assert_eq!((status, health["checks"]["store"]["kind"].as_str()), (200, Some("mongodb")), "{health}");

    let mut socket = SocketClient::connect(&app.base_url, &alice).await.expect("socket connects");
    socket.join(&conversation).await;

    drop(mongo);

    // A socket send answers the failure to that socket (ack and `message:error` for its
    // temp id) and the connection stays up.
    let ack = socket
        .emit_ack("message:send", json!({ "conversationId": conversation, "content": "during", "tempId": "t-1" }))
        .await;
    assert_eq!(ack.data["ok"], false, "{}", ack.data);
    let failed = socket.wait_for("message:error", |e| e["messageId"] == "t-1").await;
    assert_eq!(failed.data["error"], "Service temporarily unavailable");

    let (status, body) = app.get(&alice, &format!("/api/conversations/{conversation}")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, json!({ "error": "Service temporarily unavailable" }));
    let (status, _) =
        app.post(&alice, &format!("/api/conversations/{conversation}/messages"), json!({ "content": "during" })).await;
    assert_eq!(status, 503);
    let (status, health) = app.get(&alice, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(health["checks"]["store"]["status"], "down");

    // Back on the same address (empty: the test server keeps data in memory). The service
    // reconnects without a restart.
    let _mongo = start_mongo(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = app.get(&alice, "/health").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover after MongoDB returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = app.conversation(&alice).await;
    let sent = app.message(&alice, &again, "after the outage").await;
    assert_eq!(sent["content"], "after the outage");
    // The same socket, never reconnected, works again.
    socket.join(&again).await;
    let ack = socket.emit_ack("message:send", json!({ "conversationId": again, "content": "socket is back" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
}
