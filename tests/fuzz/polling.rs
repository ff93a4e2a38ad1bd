//! The Engine.IO HTTP long-polling fuzzer: handshakes (some malformed), POSTs of random
//! packet payloads to the session, long-poll GETs, requests with bogus session ids, and now
//! and then an upgrade of the session to WebSocket. Every session ends with a close packet,
//! which must also answer any long-poll GET still waiting.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::input::{self, quoted, Known};
use crate::socket::{event_packet, DEADLINE};
use crate::watch::{error_chain, preview, preview_bytes, Counts, SERVER_ERROR, UNANSWERED};
use crate::Ctx;

const POLLING_PATH: &str = "/socket.io/?EIO=4&transport=polling";

/// One planned request; the session id is filled in when it is sent.
struct Call {
    method: Method,
    target: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl Call {
    fn describe(&self) -> String {
        format!(
            "{} {} | content-type: {} | body ({} bytes): {}",
            self.method,
            preview(&self.target),
            self.content_type.unwrap_or("none"),
            self.body.len(),
            preview_bytes(&self.body)
        )
    }
}

pub async fn run(ctx: Arc<Ctx>, client: reqwest::Client, worker: u64, task: usize, sessions: u64) {
    for number in 0..sessions {
        if ctx.aborted() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(crate::stream_seed(ctx.seed, crate::POLLING_STREAM + worker, number));
        let name = format!("polling worker {worker} session {number}");
        run_session(&ctx, &client, task, &name, &mut rng).await;
        Counts::add(&ctx.counts.polling_sessions, 1);
    }
}

async fn run_session(ctx: &Arc<Ctx>, client: &reqwest::Client, task: usize, name: &str, rng: &mut StdRng) {
    let handshake = handshake_call(rng);
    ctx.activity.set(task, format!("{name}: {}", handshake.describe()));
    let Some((status, body)) = call(ctx, client, "polling handshake", &handshake, name).await else { return };
    let sid = (status == 200)
        .then(|| serde_json::from_slice::<serde_json::Value>(body.get(1..)?).ok()?.get("sid")?.as_str().map(str::to_string))
        .flatten();
    let Some(sid) = sid else { return };

    let mut long_polls: Vec<JoinHandle<()>> = Vec::new();
    for step in 0..rng.random_range(1..8) {
        let roll = rng.random_range(0..100);
        let call = match roll {
            0..55 => post(rng, &ctx.known, &sid),
            55..65 => Call { target: format!("{POLLING_PATH}&sid={}", bogus_sid(rng, &sid)), ..post(rng, &ctx.known, &sid) },
            65..75 => get(&bogus_sid(rng, &sid)),
            75..95 if long_polls.len() < 2 => {
                // Answered when a packet is due or, at the latest, by the close at the end.
                let call = get(&input::percent_encode(&sid));
                let (ctx, client, name) = (ctx.clone(), client.clone(), format!("{name} step {step}"));
                long_polls.push(tokio::spawn(async move {
                    let _ = self::call(&ctx, &client, "polling GET (long poll)", &call, &name).await;
                }));
                continue;
            }
            75..95 => post(rng, &ctx.known, &sid),
            _ => {
                ctx.activity.set(task, format!("{name} step {step}: upgrade to websocket"));
                upgrade(ctx, rng, &sid, name).await;
                continue;
            }
        };
        ctx.activity.set(task, format!("{name} step {step}: {}", call.describe()));
        let route = if call.method == Method::GET { "polling GET" } else { "polling POST" };
        call_judged(ctx, client, route, &call, name).await;
    }
    let close = Call {
        method: Method::POST,
        target: format!("{POLLING_PATH}&sid={}", input::percent_encode(&sid)),
        content_type: Some("text/plain;charset=UTF-8"),
        body: b"1".to_vec(),
    };
    ctx.activity.set(task, format!("{name}: close"));
    call_judged(ctx, client, "polling POST", &close, name).await;
    for long_poll in long_polls {
        let _ = long_poll.await;
    }
}

async fn call_judged(ctx: &Ctx, client: &reqwest::Client, route: &str, call: &Call, name: &str) {
    let _ = self::call(ctx, client, route, call, name).await;
}

/// Sends `call`, judges the answer, and returns it.
async fn call(ctx: &Ctx, client: &reqwest::Client, route: &str, call: &Call, name: &str) -> Option<(u16, Vec<u8>)> {
    let url = format!("{}{}", ctx.base_url, call.target);
    for attempt in 0..2 {
        // The retry goes over a new connection: a kept-alive one may have been closed.
        let client = if attempt == 0 { client } else { &ctx.unpooled };
        let mut request = client.request(call.method.clone(), &url).body(call.body.clone());
        if let Some(ct) = call.content_type {
            request = request.header("content-type", ct);
        }
        Counts::add(&ctx.counts.polling_requests, 1);
        let answer = match request.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                res.bytes().await.map(|b| (status, b.to_vec()))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((status, body)) => {
                ctx.findings.status(route, status);
                if status >= 500 && status != 503 {
                    ctx.findings.fail(SERVER_ERROR, format!("{route} → {status}"), || {
                        format!("{name}: {} → {status} {}", call.describe(), preview_bytes(&body))
                    });
                }
                return Some((status, body));
            }
            Err(e) if e.is_timeout() => {
                ctx.findings.fail(UNANSWERED, format!("{route}: no answer within {DEADLINE:?}"), || {
                    format!("{name}: {}", call.describe())
                });
                return None;
            }
            Err(_) if attempt == 0 => {}
            Err(_) if call.body.len() > crate::socket::MAX_PAYLOAD => return None,
            Err(e) => {
                if !ctx.server_gone() {
                    ctx.findings.fail(UNANSWERED, format!("{route}: connection failed, also on a new one"), || {
                        format!("{name}: {} → {}", call.describe(), error_chain(&e))
                    });
                }
                return None;
            }
        }
    }
    None
}

fn handshake_call(rng: &mut StdRng) -> Call {
    let target = if rng.random_bool(0.9) {
        if rng.random_bool(0.5) { format!("{POLLING_PATH}&t={}", input::hex(rng, 7)) } else { POLLING_PATH.to_string() }
    } else {
        [
            "/socket.io/?EIO=3&transport=polling", "/socket.io/?EIO=5&transport=polling", "/socket.io/?EIO=4&transport=flashsocket",
            "/socket.io/?EIO=4", "/socket.io/?EIO=4&transport=polling&j=0", "/socket.io/?EIO=4&transport=polling&b64=1",
            "/socket.io/?EIO=abc&transport=polling", "/socket.io/?EIO=4&transport=polling&sid=",
        ]
        .choose(rng)
        .unwrap()
        .to_string()
    };
    let method = if rng.random_bool(0.95) {
        Method::GET
    } else {
        [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::HEAD].choose(rng).unwrap().clone()
    };
    Call { method, target, content_type: None, body: Vec::new() }
}

fn get(sid: &str) -> Call {
    Call { method: Method::GET, target: format!("{POLLING_PATH}&sid={sid}"), content_type: None, body: Vec::new() }
}

/// A POST of one to five packets, usually separated as Engine.IO v4 does (record separator).
fn post(rng: &mut StdRng, known: &Known, sid: &str) -> Call {
    let content_type = if rng.random_bool(0.8) {
        Some("text/plain;charset=UTF-8")
    } else {
        ["application/octet-stream", "application/json", "text/plain;charset=latin1"].choose(rng).copied()
    };
    let body = if rng.random_ratio(1, 10) {
        let len = rng.random_range(0..3000);
        input::random_bytes(rng, len)
    } else if rng.random_ratio(1, 300) {
        // Over the max payload.
        format!("42[\"message:send\",{{\"content\":\"{}\"}}]", "m".repeat(1_100_000)).into_bytes()
    } else {
        let packets: Vec<String> = (0..rng.random_range(1..6)).map(|_| packet(rng, known)).collect();
        let separator = *["\u{1e}", "\u{1e}", "\u{1e}", "\n", ""].choose(rng).unwrap();
        packets.join(separator).into_bytes()
    };
    Call { method: Method::POST, target: format!("{POLLING_PATH}&sid={}", input::percent_encode(sid)), content_type, body }
}

fn packet(rng: &mut StdRng, known: &Known) -> String {
    use base64::Engine;
    match rng.random_range(0..100) {
        0..30 => {
            let token = known.tokens.choose(rng).unwrap();
            format!("40{{\"token\":{}}}", token.socket.as_deref().map(quoted).unwrap_or_else(|| "null".into()))
        }
        30..62 => {
            let chaotic = rng.random_bool(0.2);
            event_packet(rng, known, chaotic)
        },
        62..72 => ["2", "3", "6", "1", "5", "0", "4", ""].choose(rng).unwrap().to_string(),
        72..82 => {
            let len = rng.random_range(0..500);
            format!("b{}", base64::engine::general_purpose::STANDARD.encode(input::random_bytes(rng, len)))
        }
        82..85 => "bnot base64!".into(),
        85..95 => input::random_chars(rng, 0..80),
        _ => ["4x", "47", "451-[\"x\",{\"_placeholder\":true,\"num\":0}]", "40/admin,", "41"].choose(rng).unwrap().to_string(),
    }
}

/// A session id that is not this session's.
fn bogus_sid(rng: &mut StdRng, sid: &str) -> String {
    match rng.random_range(0..7) {
        0 => input::hex(rng, 20),
        1 => {
            let mut changed: Vec<char> = sid.chars().collect();
            let i = rng.random_range(0..changed.len().max(1));
            if let Some(c) = changed.get_mut(i) {
                *c = if *c == 'A' { 'B' } else { 'A' };
            }
            input::percent_encode(&changed.into_iter().collect::<String>())
        }
        2 => String::new(),
        3 => "%00".into(),
        4 => format!("{}x", input::percent_encode(sid)),
        5 => "s".repeat(rng.random_range(100..10_000)),
        _ => input::percent_encode(&input::random_chars(rng, 20..=20)),
    }
}

/// Upgrades the session to WebSocket as socket.io-client does (`2probe` → `3probe`, then
/// `5`), or starts to and then misbehaves.
async fn upgrade(ctx: &Ctx, rng: &mut StdRng, sid: &str, name: &str) {
    Counts::add(&ctx.counts.upgrades_attempted, 1);
    let url = format!("{}/socket.io/?EIO=4&transport=websocket&sid={}", ctx.ws_base, input::percent_encode(sid));
    let ws = match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(&url)).await {
        Ok(Ok((ws, response))) => {
            ctx.findings.status("websocket upgrade of a polling session", response.status().as_u16());
            ws
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            ctx.findings.status("websocket upgrade of a polling session", status);
            if status >= 500 && status != 503 {
                ctx.findings.fail(SERVER_ERROR, format!("websocket upgrade of a polling session → {status}"), || name.to_string());
            }
            return;
        }
        Ok(Err(e)) => {
            if !ctx.server_gone() {
                ctx.findings.fail(UNANSWERED, "websocket upgrade of a polling session failed".into(), || format!("{name}: {e}"));
            }
            return;
        }
        Err(_) => {
            ctx.findings.fail(UNANSWERED, "websocket upgrade of a polling session unanswered".into(), || name.to_string());
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let probe = if rng.random_bool(0.85) { "2probe".to_string() } else { input::random_chars(rng, 5..=5) };
    if sink.send(Message::text(probe.clone())).await.is_err() {
        return;
    }
    if probe == "2probe" {
        let answered = tokio::time::timeout(DEADLINE, async {
            while let Some(Ok(message)) = stream.next().await {
                if message.to_text().is_ok_and(|t| t == "3probe") {
                    return true;
                }
            }
            // Closed: the session may have ended before the upgrade.
            true
        })
        .await;
        if answered.is_err() {
            ctx.findings.fail(UNANSWERED, "upgrade: 2probe unanswered".into(), || name.to_string());
            return;
        }
    }
    let next = match rng.random_range(0..10) {
        0..7 => "5".to_string(),
        7 => "6".to_string(),
        8 => event_packet(rng, &ctx.known, true),
        _ => input::random_chars(rng, 10..=10),
    };
    let _ = sink.send(Message::text(next)).await;
    for _ in 0..rng.random_range(0..5) {
        let packet = event_packet(rng, &ctx.known, false);
        if sink.send(Message::text(packet)).await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(DEADLINE, sink.close()).await;
}
