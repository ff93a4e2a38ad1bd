//! What one socket sends arrives as it was sent: stored, broadcast and acknowledged in the
//! order of emission, and a send beyond the socket's queue is refused at once as busy rather
//! than queued. A member that was away (or was disconnected for not keeping up) gets what it
//! missed by joining with the last message it has. Runs on SQLite, and on MongoDB with
//! `CHAT_TEST_STORE=mongo`.

mod common;

use common::socket::SocketClient;
use common::{spawn_app, user};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Ws;

const COMPANY: &str = "company-order";

#[tokio::test]
async fn one_sockets_sends_are_stored_broadcast_and_acknowledged_in_order() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "100000")]);
    let token = user("sender", COMPANY);
    let conversation = app.conversation(&token).await;
    let mut receiver = SocketClient::connect(&app.base_url, &user("receiver", COMPANY)).await.expect("connect");
    receiver.join(&conversation).await;
    let mut sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    sender.join(&conversation).await;

    // 200 sends emitted back to back, as socket.io-client flushes its buffer on reconnect:
    // `join_all` polls each future once, in order, before any acknowledgement can arrive.
    // Every tenth is empty, so refused without being stored: its answer still waits its turn.
    const N: usize = 200;
    let sent: Vec<String> = (0..N).map(|i| if i % 10 == 5 { String::new() } else { format!("ordered {i:03}") }).collect();
    let contents: Vec<String> = sent.iter().filter(|c| !c.is_empty()).cloned().collect();
    let acks = join_all(
        sent.iter().map(|c| sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": c }))),
    )
    .await;

    let mut acked: Vec<(u64, String)> = acks
        .iter()
        .map(|a| match a.data["message"]["content"].as_str() {
            Some(content) => (a.seq, content.to_string()),
            None => {
                assert_eq!(a.data["error"], "Invalid message data", "{}", a.data);
                (a.seq, String::new())
            }
        })
        .collect();
    acked.sort();
    let ack_order: Vec<_> = acked.into_iter().map(|(_, c)| c).collect();
    assert_eq!(ack_order, sent, "acknowledgements out of send order");

    let mut broadcast_order = Vec::new();
    for _ in 0..contents.len() {
        let e = receiver.wait_for("message:new", |d| d["message"]["content"].as_str().is_some_and(|c| c.starts_with("ordered"))).await;
        broadcast_order.push(e.data["message"]["content"].as_str().unwrap().to_string());
    }
    assert_eq!(broadcast_order, contents, "broadcasts out of send order");

    // Stored order: the two pages of 100, oldest first.
    let mut stored_order = Vec::new();
    for offset in [100, 0] {
        let (status, body) =
            app.get(&token, &format!("/api/conversations/{conversation}/messages?limit=100&offset={offset}")).await;
        assert_eq!(status, 200, "{body}");
        stored_order.extend(
            body["messages"].as_array().unwrap().iter().map(|m: &Value| m["content"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(stored_order, contents, "stored out of send order");
}

#[tokio::test]
async fn sends_past_the_sockets_queue_are_refused_as_busy_and_not_stored() {
    // A process-wide bound of 8 pending events makes the refusal reachable with one socket.
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "100000"), ("MAX_PENDING_EVENTS", "8")]);
    let token = user("burst", COMPANY);
    let conversation = app.conversation(&token).await;
    let sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");

    let acks = join_all((0..400).map(|i| {
        sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": format!("burst {i}"), "tempId": i }))
    }))
    .await;
    let accepted = acks.iter().filter(|a| a.data["ok"] == true).count();
    let busy: Vec<_> = acks.iter().filter(|a| a.data["ok"] == false).collect();
    assert!(!busy.is_empty(), "400 sends at once against a bound of 8 were all accepted");
    for refused in &busy {
        assert_eq!(refused.data["error"], "Server is busy, try again", "{}", refused.data);
    }

    // Exactly the accepted ones were stored.
    let (status, body) = app.get(&token, &format!("/api/conversations/{conversation}/messages?limit=100")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"].as_u64().unwrap() as usize, accepted, "{body}");

    // Joins wait in the same queue, under the same bound.
    let joins = join_all((0..100).map(|_| sender.emit_ack("conversation:join", json!({ "conversationId": conversation })))).await;
    assert!(joins.iter().any(|a| a.data["ok"] == true));
    let busy_joins = joins.iter().filter(|a| a.data["error"] == "Server is busy, try again").count();
    assert!(busy_joins > 0, "100 joins at once against a bound of 8");

    // The socket stays usable once the burst has drained.
    let ack = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "after the burst" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);

    let metrics = app.scrape(None).await;
    assert_eq!(metrics.value("chat_busy_refusals_total"), (busy.len() + busy_joins) as f64);
    assert_eq!(metrics.value(r#"chat_send_ack_duration_seconds_count{outcome="error"}"#), busy.len() as f64);
    assert_eq!(metrics.value(r#"chat_send_ack_duration_seconds_count{outcome="ok"}"#), (accepted + 1) as f64);
}

/// The next text packet of a raw Engine.IO WebSocket, answering pings; `None` once the server
/// closed the connection.
async fn next_packet(ws: &mut RawSocket) -> Option<String> {
    loop {
        match tokio::time::timeout(common::socket::DEADLINE, ws.next()).await.expect("the server neither sent more nor closed the connection: a connected member with a gap") {
            Some(Ok(Ws::Text(t))) if t.as_str() == "2" => {
                let _ = ws.send(Ws::text("3")).await;
            }
            Some(Ok(Ws::Text(t))) => return Some(t.to_string()),
            Some(Ok(Ws::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test]
async fn a_member_that_stops_reading_is_disconnected_never_left_with_a_gap() {
    // A small per-socket buffer so the stalled member overflows it quickly.
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "100000"), ("SOCKET_BUFFER_SIZE", "64"), ("LEGACY_EVENTS", "false")]);
    let token = user("talker", COMPANY);
    let conversation = app.conversation(&token).await;
    // The last message the stalled member has before it joins.
    let before = app.message(&token, &conversation, "before").await["id"].as_str().unwrap().to_string();

    // The stalled member speaks raw Engine.IO so that it can stop reading at the TCP level.
    let (mut stalled, _) = raw_connect(&app.base_url, json!({ "token": user("stalled", COMPANY) })).await;
    stalled.send(Ws::text(format!("421{}", json!(["conversation:join", conversation])))).await.unwrap();
    while !next_packet(&mut stalled).await.expect("join answered").starts_with("431") {}

    // Not read from now on, while another member sends 3000 messages of 2 KB.
    let sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let acked = send_burst(&sender, &conversation).await;

    // Reading again: whatever arrives is the acknowledged stream from its start, without a
    // hole, and it ends either complete or with the server closing the connection.
    let mut received = Vec::new();
    let closed = loop {
        let Some(packet) = next_packet(&mut stalled).await else { break true };
        let Some(event) = packet.strip_prefix("42") else { continue };
        let event: Value = serde_json::from_str(event).unwrap();
        if event[0] == "message:new" {
            received.push(event[1]["message"]["id"].as_str().unwrap().to_string());
            if received.len() == acked.len() {
                break false;
            }
        }
    };
    assert_eq!(received[..], acked[..received.len()], "the stalled member's stream has a gap");
    assert!(closed || received.len() == acked.len());
    assert!(closed, "with a 64-packet buffer, 3000 messages to a member that does not read must overflow it");
    assert_eq!(app.scrape(None).await.value("chat_slow_consumer_disconnects_total"), 1.0);

    // Back, it catches up from the last message it received: the rest, once each, in order.
    let mut back = SocketClient::connect(&app.base_url, &user("stalled", COMPANY)).await.expect("connect");
    let mut last = received.last().cloned().unwrap_or(before);
    loop {
        let ack = rejoin(&mut back, &conversation, &last).await;
        received.extend(ids(&ack["missed"]));
        if ack["hasMore"] == false {
            break;
        }
        last = received.last().unwrap().clone();
    }
    assert_eq!(received, acked, "received live, then caught up");

    // The sender never noticed.
    let ack = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "after" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
}

#[tokio::test]
async fn overload_is_refused_early_and_what_is_accepted_is_delivered() {
    // The members here share the machine's cores with the saturated server and may read more
    // slowly than it writes; a larger outgoing buffer keeps this test about inbound overload
    // (slow members have their own test above).
    // At most 16 events waiting per socket and 128 in the process: with a slow store (the
    // MongoDB test server answers in milliseconds, not microseconds) the accepted ones are
    // still answered within seconds.
    let app = spawn_app(&[
        ("SOCKET_MESSAGE_LIMIT", "1000000"),
        ("LEGACY_EVENTS", "false"),
        ("SOCKET_BUFFER_SIZE", "100000"),
        ("MAX_PENDING_EVENTS", "128"),
        ("MAX_PENDING_EVENTS_PER_SOCKET", "16"),
    ]);
    const ROOMS: usize = 8;
    const SENDERS_PER_ROOM: usize = 2;
    // Offered: every 200 ms each sender emits 300 sends without waiting, for 4 s: 24,000
    // sends/s in all, far past what one server process stores and broadcasts.
    const WAVES: usize = 20;
    const PER_WAVE: usize = 300;

    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let token = user(&format!("overload-owner-{r}"), COMPANY);
        let conversation = app.conversation(&token).await;
        let mut receiver = SocketClient::connect(&app.base_url, &user(&format!("overload-reader-{r}"), COMPANY)).await.expect("connect");
        receiver.join(&conversation).await;
        rooms.push((conversation, receiver));
    }
    let baseline = app.rss();

    let mut senders = Vec::new();
    for (r, (conversation, _)) in rooms.iter().enumerate() {
        for s in 0..SENDERS_PER_ROOM {
            let client = SocketClient::connect(&app.base_url, &user(&format!("overload-{r}-{s}"), COMPANY)).await.expect("connect");
            let client = std::sync::Arc::new(client);
            let conversation = conversation.clone();
            senders.push(tokio::spawn(async move {
                let mut waves = Vec::new();
                for wave in 0..WAVES {
                    let (client, conversation) = (client.clone(), conversation.clone());
                    // Spawned so that the wave goes out now, whatever earlier waves await.
                    waves.push(tokio::spawn(async move {
                        join_all((0..PER_WAVE).map(|i| {
                            let content = format!("load {r}-{s}-{wave}-{i}");
                            client.emit_ack("message:send", json!({ "conversationId": conversation, "content": content }))
                        }))
                        .await
                    }));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                let mut acks = Vec::new();
                for wave in waves {
                    acks.extend(wave.await.unwrap());
                }
                (r, acks)
            }));
        }
    }
    // Peak memory while the load runs, sampled until every sender has its answers.
    let mut peak = baseline;
    while !senders.iter().all(|t| t.is_finished()) {
        peak = peak.max(app.rss());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let mut accepted_per_room = vec![Vec::new(); ROOMS];
    let (mut accepted, mut busy) = (0, 0);
    for task in senders {
        let (r, acks) = task.await.unwrap();
        for ack in acks {
            if ack.data["ok"] == true {
                accepted += 1;
                accepted_per_room[r].push(ack.data["message"]["id"].as_str().unwrap().to_string());
            } else {
                assert_eq!(ack.data["error"], "Server is busy, try again", "{}", ack.data);
                busy += 1;
            }
        }
    }
    println!(
        "overload: offered {}, accepted {accepted}, refused busy {busy}, RSS {} MB → peak {} MB",
        ROOMS * SENDERS_PER_ROOM * WAVES * PER_WAVE,
        baseline / 1_000_000,
        peak / 1_000_000
    );
    assert!(busy > 0, "an offered load this far past saturation must be refused in part");
    assert!(accepted > 0);
    // Bounded queues: at most 128 checked sends wait at once (395 MB peak when a waiting send
    // held its raw payload and its whole processing future, and 4,096 could wait).
    assert!(peak < baseline + 120_000_000, "RSS grew from {baseline} to {peak} bytes under overload");

    // Every accepted message reached its room's member, who stayed connected.
    for ((_, receiver), ids) in rooms.iter_mut().zip(&accepted_per_room) {
        for id in ids {
            receiver.wait_for("message:new", |d| d["message"]["id"] == *id.as_str()).await;
        }
    }
    let (status, _) = app.get(&user("x", COMPANY), "/health").await;
    assert_eq!(status, 200);
}

/// Joins with the last message the client has and takes the `conversation:joined` event;
/// returns the acknowledgement.
async fn rejoin(client: &mut SocketClient, conversation: &str, last_message_id: &str) -> Value {
    let ack = client
        .emit_ack("conversation:join", json!({ "conversationId": conversation, "lastMessageId": last_message_id }))
        .await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    client.wait_for("conversation:joined", |d| d["id"] == conversation).await;
    ack.data
}

fn ids(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_member_that_was_away_gets_what_it_missed_when_it_joins_again() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "100000")]);
    let token = user("talker", COMPANY);
    let conversation = app.conversation(&token).await;
    let sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let send = |content: String| sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": content }));

    let away = user("away", COMPANY);
    let mut member = SocketClient::connect(&app.base_url, &away).await.expect("connect");
    member.join(&conversation).await;
    let seen = send("seen".into()).await.data["message"]["id"].as_str().unwrap().to_string();
    member.wait_for("message:new", |d| d["message"]["id"] == seen.as_str()).await;
    member.close();

    // 130 messages while away, one of them in a thread: more than one acknowledgement holds.
    let (_, t) = app.post(&token, &format!("/api/conversations/{conversation}/threads"), json!({ "title": "Side" })).await;
    let thread_id = t["thread"]["id"].as_str().unwrap();
    let mut sent = Vec::new();
    for ack in join_all((0..130).map(|i| send(format!("missed {i:03}")))).await {
        assert_eq!(ack.data["ok"], true, "{}", ack.data);
        sent.push(ack.data["message"]["id"].as_str().unwrap().to_string());
    }
    let ack = sender
        .emit_ack("message:send", json!({ "conversationId": conversation, "content": "in a thread", "threadId": thread_id }))
        .await;
    sent.push(ack.data["message"]["id"].as_str().unwrap().to_string());

    let mut member = SocketClient::connect(&app.base_url, &away).await.expect("connect");
    let first = rejoin(&mut member, &conversation, &seen).await;
    assert_eq!(first["conversation"]["id"], conversation.as_str());
    assert_eq!((first["missed"].as_array().unwrap().len(), first["hasMore"].as_bool()), (100, Some(true)));
    let last = first["missed"][99]["id"].as_str().unwrap().to_string();
    // Joining again is how the rest is asked for; the socket is already in the room.
    let rest = rejoin(&mut member, &conversation, &last).await;
    assert_eq!(rest["hasMore"], false);
    let caught_up: Vec<String> = ids(&first["missed"]).into_iter().chain(ids(&rest["missed"])).collect();
    assert_eq!(caught_up, sent, "every missed message once, in order, every thread");

    // And it is a member again: the next message arrives as an event.
    let next = send("live again".into()).await.data["message"]["id"].as_str().unwrap().to_string();
    member.wait_for("message:new", |d| d["message"]["id"] == next.as_str()).await;

    // Without lastMessageId the acknowledgement is as before.
    let plain = member.emit_ack("conversation:join", json!(conversation)).await;
    assert_eq!(plain.data["ok"], true);
    assert!(plain.data.get("missed").is_none() && plain.data.get("hasMore").is_none(), "{}", plain.data);
}

#[tokio::test]
async fn a_join_with_an_unusable_last_message_is_refused_and_does_not_happen() {
    let app = spawn_app(&[]);
    let token = user("owner", COMPANY);
    let conversation = app.conversation(&token).await;
    let elsewhere = app.conversation(&token).await;
    let foreign = app.message(&token, &elsewhere, "elsewhere").await["id"].as_str().unwrap().to_string();
    let mut member = SocketClient::connect(&app.base_url, &user("member", COMPANY)).await.expect("connect");
    let mut watcher = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    watcher.join(&conversation).await;

    for (last, error) in [
        (json!("aaaaaaaaaaaaaaaaaaaaaaaa"), "Message not found"),
        (json!(foreign), "Message not found"),
        (json!("not-an-id"), "Invalid id"),
        (json!({ "$gt": "" }), "Invalid id"),
    ] {
        let ack = member.emit_ack("conversation:join", json!({ "conversationId": conversation, "lastMessageId": last })).await;
        assert_eq!((&ack.data["ok"], &ack.data["error"]), (&json!(false), &json!(error)), "{last}: {}", ack.data);
    }
    // Not in the room: a message there does not reach it, while one in a room it did join does.
    let unseen = app.message(&token, &conversation, "not for the refused").await["id"].as_str().unwrap().to_string();
    member.join(&elsewhere).await;
    let seen = app.message(&token, &elsewhere, "for the member").await["id"].as_str().unwrap().to_string();
    member.wait_for("message:new", |d| d["message"]["id"] == seen.as_str()).await;
    assert_eq!(member.count_received("message:new", |d| d["message"]["id"] == unseen.as_str()), 0);
    assert_eq!(member.count_received("conversation:joined", |d| d["id"] == conversation.as_str()), 0);
    // Nobody was told it joined.
    assert_eq!(watcher.count_received("user:joined", |d| d["userId"] == "member"), 0);
}

/// 3000 messages of 2 KB, 100 in flight at a time, each acknowledged `ok`: their ids in send order.
async fn send_burst(sender: &SocketClient, conversation: &str) -> Vec<String> {
    let body = "m".repeat(2000);
    let mut acked = Vec::new();
    for chunk in (0..3000).collect::<Vec<_>>().chunks(100) {
        let acks = join_all(chunk.iter().map(|i| {
            sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": format!("{i:04} {body}") }))
        }))
        .await;
        for ack in acks {
            assert_eq!(ack.data["ok"], true, "{}", ack.data);
            acked.push(ack.data["message"]["id"].as_str().unwrap().to_string());
        }
    }
    acked
}

/// A raw Engine.IO WebSocket past the Socket.IO handshake with `auth`, and the session id
/// (`pid`) the server's CONNECT answer gave.
async fn raw_connect(base_url: &str, auth: Value) -> (RawSocket, Option<String>) {
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", base_url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
    assert!(next_packet(&mut ws).await.expect("open").starts_with('0'));
    ws.send(Ws::text(format!("40{auth}"))).await.unwrap();
    let connect = next_packet(&mut ws).await.expect("connected");
    let answer: Value = serde_json::from_str(connect.strip_prefix("40").expect("a CONNECT answer")).unwrap();
    (ws, answer["pid"].as_str().map(str::to_string))
}

/// A `message:new` of a raw packet: the message id and the offset it carries, if any.
fn message_new(packet: &str) -> Option<(String, Option<String>)> {
    let args: Vec<Value> = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    if args.first()? != "message:new" {
        return None;
    }
    let offset = args.get(2).and_then(Value::as_str).map(str::to_string);
    Some((args.get(1)?["message"]["id"].as_str()?.to_string(), offset))
}

#[tokio::test]
async fn a_stalled_member_disconnected_for_overflow_recovers_its_session_and_the_rest() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "100000"), ("SOCKET_BUFFER_SIZE", "64"), ("LEGACY_EVENTS", "false")]);
    let token = user("talker", COMPANY);
    let conversation = app.conversation(&token).await;
    let member_token = user("stalled", COMPANY);
    let (mut stalled, pid) = raw_connect(&app.base_url, json!({ "token": member_token })).await;
    let pid = pid.expect("recovery is on by default: the CONNECT answer carries a pid");
    stalled.send(Ws::text(format!("421{}", json!(["conversation:join", conversation])))).await.unwrap();
    while !next_packet(&mut stalled).await.expect("join answered").starts_with("431") {}

    // A first message, read, so the member has an offset.
    let sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    let first = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "first" })).await;
    let mut offset = loop {
        let packet = next_packet(&mut stalled).await.expect("first message");
        if let Some((_, Some(offset))) = message_new(&packet) {
            break offset;
        }
    };
    assert_eq!(first.data["ok"], true);

    // Not read from now on, while another member sends 3000 messages of 2 KB.
    let acked = send_burst(&sender, &conversation).await;

    // Reading again: the acknowledged stream from its start, then a disconnect (the buffer
    // overflowed); each time the member comes back with its pid and last offset, the session
    // is recovered and the stream goes on where it stopped.
    let mut received = Vec::new();
    let mut live = None;
    let mut disconnects = 0;
    let mut ws = stalled;
    while received.len() < acked.len() {
        match next_packet(&mut ws).await {
            Some(packet) => {
                if let Some((id, Some(at))) = message_new(&packet) {
                    received.push(id);
                    offset = at;
                }
            }
            None => {
                disconnects += 1;
                assert!(disconnects <= 5, "recovery keeps failing");
                live.get_or_insert(received.len());
                let auth = json!({ "token": member_token, "pid": pid, "offset": offset });
                let (back, same) = raw_connect(&app.base_url, auth).await;
                assert_eq!(same.as_deref(), Some(pid.as_str()), "the session is recovered");
                ws = back;
            }
        }
        assert_eq!(received[..], acked[..received.len()], "the member's stream has a gap or a repeat");
    }
    assert_eq!(received, acked, "every acknowledged message, once, in order");
    assert!(disconnects >= 1, "with a 64-packet buffer, 3000 messages to a member that does not read must overflow it");
    let metrics = app.scrape(None).await;
    assert_eq!(metrics.value(r#"chat_socket_recoveries_total{outcome="recovered"}"#), disconnects as f64);
    println!(
        "stalled member: {} acknowledged, {} received live before the first disconnect, {} after recovery, {disconnects} disconnect(s), {} recovered",
        acked.len(),
        live.unwrap_or(received.len()),
        received.len() - live.unwrap_or(received.len()),
        metrics.value(r#"chat_socket_recoveries_total{outcome="recovered"}"#),
    );
}
