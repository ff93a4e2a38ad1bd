//! Uploads, downloads and deletions of attachments against the real binary, on the local
//! directory and on the S3-compatible test server (moto, started by scripts/test-services.sh),
//! on whichever store CHAT_TEST_STORE picks.

mod common;

use common::socket::SocketClient;
use common::{file_storage_env, s3_keys, spawn_app, user, widget, FileStorage, TestApp};
use serde_json::{json, Value};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

fn app_with(storage: FileStorage) -> (TestApp, Option<String>) {
    let (env, bucket) = file_storage_env(storage);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    (spawn_app(&env), bucket)
}

/// What the storage holds now: file names under the local directory, or the bucket's keys.
fn stored_files(app: &TestApp, bucket: &Option<String>) -> Vec<String> {
    match bucket {
        Some(url) => s3_keys(url),
        None => {
            let mut found = Vec::new();
            let mut dirs = vec![app.data_dir.join("files")];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.path().is_dir() {
                        dirs.push(entry.path());
                    } else {
                        found.push(entry.path().display().to_string());
                    }
                }
            }
            found
        }
    }
}

async fn download(app: &TestApp, token: &str, url: &str) -> reqwest::Response {
    app.http.get(url).bearer_auth(token).send().await.expect("download")
}

async fn upload_download_and_tenancy(storage: FileStorage) {
    let (app, bucket) = app_with(storage);
    let alice = user("alice", "acme");
    let c = app.conversation(&alice).await;

    let (status, body) = app.upload(&alice, &c, "pixel.png", Some("image/png"), PNG).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["type"], "image/png");
    assert_eq!(body["name"], "pixel.png");
    assert_eq!(body["size"], PNG.len());
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["url"].as_str().unwrap().to_string();
    assert_eq!(url, app.url(&format!("/api/attachments/{id}")));
    assert_eq!(stored_files(&app, &bucket).len(), 1);
    assert!(stored_files(&app, &bucket)[0].contains(&format!("attachments/acme/{c}/{id}")), "{:?}", stored_files(&app, &bucket));

    let res = download(&app, &alice, &url).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"].to_str().unwrap().starts_with("inline; filename=\"pixel.png\""));
    assert_eq!(res.bytes().await.unwrap().as_ref(), PNG);

    // The conversation's widget may read it; another conversation's widget, another company
    // and nobody may not, and learn nothing.
    assert_eq!(download(&app, &widget(&c, "acme"), &url).await.status(), 200);
    let other = app.conversation(&alice).await;
    assert_eq!(download(&app, &widget(&other, "acme"), &url).await.status(), 404);
    assert_eq!(download(&app, &user("mallory", "evil-corp"), &url).await.status(), 404);
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(app.upload(&user("mallory", "evil-corp"), &c, "x.png", None, PNG).await.0, 404);

    // A document is served as an attachment, with its exact name encoded.
    let (status, body) = app.upload(&widget(&c, "acme"), &c, "Übersicht 2026.pdf", None, PDF).await;
    assert_eq!(status, 201, "{body}");
    let res = download(&app, &alice, body["url"].as_str().unwrap()).await;
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment; filename=\"_bersicht 2026.pdf\""), "{disposition}");
    assert!(disposition.ends_with("filename*=UTF-8''%C3%9Cbersicht%202026.pdf"), "{disposition}");

    // Deleting a file: the record and the bytes go.
    let pdf_id = body["id"].as_str().unwrap();
    let (status, _) = app.delete(&alice, &format!("/api/attachments/{pdf_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(download(&app, &alice, body["url"].as_str().unwrap()).await.status(), 404);
    assert_eq!(stored_files(&app, &bucket).len(), 1);

    // Deleting the conversation deletes its files (in the background: poll briefly).
    assert_eq!(app.delete(&alice, &format!("/api/conversations/{c}")).await.0, 200);
    assert_eq!(download(&app, &alice, &url).await.status(), 404);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stored_files(&app, &bucket).is_empty() {
        assert!(std::time::Instant::now() < deadline, "files left: {:?}", stored_files(&app, &bucket));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(app.panics().is_empty());
}

#[tokio::test]
async fn upload_download_and_tenancy_on_the_local_directory() {
    upload_download_and_tenancy(FileStorage::Local).await;
}

#[tokio::test]
async fn upload_download_and_tenancy_on_s3() {
    upload_download_and_tenancy(FileStorage::S3).await;
}

#[tokio::test]
async fn types_come_from_the_bytes_and_size_is_bounded() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let c = app.conversation(&alice).await;
    let refused = [
        ("a.pdf", Some("application/pdf"), PNG, 415),
        ("a.png", Some("image/gif"), PNG, 415),
        ("page.html", Some("text/html"), b"<script>alert(1)</script>".as_slice(), 415),
        ("notes.txt", Some("text/html"), b"hello".as_slice(), 415),
        ("tool.exe", None, b"MZ\x90\0\x03\0\0\0\x04\0\0\0".as_slice(), 415),
        ("empty.txt", None, b"".as_slice(), 400),
    ];
    for (name, claim, bytes, expected) in refused {
        let (status, body) = app.upload(&alice, &c, name, claim, bytes).await;
        assert_eq!(status, expected, "{name}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    for (name, claim, kind) in [
        ("notes.txt", Some("text/plain"), "text/plain"),
        ("README.md", None, "text/markdown"),
        ("table.csv", Some("application/vnd.ms-excel"), "text/csv"),
        ("../../../etc/passwd", None, "text/plain"),
    ] {
        let (status, body) = app.upload(&alice, &c, name, claim, b"a,b\n1,2\n").await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["type"], kind, "{name}");
    }
    let (_, body) = app.upload(&alice, &c, "../../../etc/passwd", None, b"x").await;
    assert_eq!(body["name"], "passwd");

    // Exactly 10 MiB is taken; one byte more is refused while streaming.
    let limit = 10 * 1024 * 1024;
    let mut big = vec![b'a'; limit];
    assert_eq!(app.upload(&alice, &c, "big.txt", None, &big).await.0, 201);
    big.push(b'a');
    let (status, body) = app.upload(&alice, &c, "big.txt", None, &big).await;
    assert_eq!(status, 413, "{body}");

    // No `file` field.
    let (header, body) = common::multipart_file("document", "a.png", None, PNG);
    let req = app.http.post(app.url(&format!("/api/conversations/{c}/attachments"))).bearer_auth(&alice).header("content-type", header).body(body);
    let (status, body) = common::send(req).await;
    assert_eq!(status, 400, "{body}");
    assert!(app.panics().is_empty());
}

#[tokio::test]
async fn messages_name_only_uploads_of_their_own_conversation() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let c = app.conversation(&alice).await;
    let other = app.conversation(&alice).await;
    let (_, here) = app.upload(&alice, &c, "pixel.png", None, PNG).await;
    let (_, there) = app.upload(&alice, &other, "pixel.png", None, PNG).await;
    let attachment = |upload: &Value, kind: &str, name: &str| json!([{ "url": upload["url"], "type": kind, "name": name, "size": 1 }]);

    // Its own upload: kept, with the upload's own type, name and size.
    let path = format!("/api/conversations/{c}/messages");
    let (status, body) = app.post(&alice, &path, json!({ "content": "see", "attachments": attachment(&here, "text/html", "x") })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["attachments"][0]["type"], "image/png");
    assert_eq!(body["message"]["attachments"][0]["name"], "pixel.png");
    assert_eq!(body["message"]["attachments"][0]["size"], PNG.len());

    // Another conversation's upload, or an id that is no upload: refused, nothing stored.
    let (status, body) = app.post(&alice, &path, json!({ "content": "see", "attachments": attachment(&there, "image/png", "p") })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "attachments[0]");
    let fake = json!({ "url": app.url("/api/attachments/0123456789abcdef01234567") });
    let (status, _) = app.post(&alice, &path, json!({ "content": "see", "attachments": attachment(&fake, "image/png", "p") })).await;
    assert_eq!(status, 400);

    // External URLs stay as the contract allows.
    let external = json!([{ "url": "https://cdn.example.com/a.png", "type": "image/png", "name": "a.png" }]);
    let (status, body) = app.post(&alice, &path, json!({ "content": "see", "attachments": external })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["attachments"][0]["url"], "https://cdn.example.com/a.png");

    // The same check on sockets.
    let mut socket = SocketClient::connect(&app.base_url, &alice).await.expect("connect");
    socket.join(&c).await;
    let ack = socket
        .emit_ack("message:send", json!({ "conversationId": c, "content": "x", "attachments": attachment(&there, "image/png", "p") }))
        .await;
    assert_eq!(ack.data["ok"], false, "{}", ack.data);
    let ack = socket
        .emit_ack("message:send", json!({ "conversationId": c, "content": "x", "attachments": attachment(&here, "image/png", "p") }))
        .await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    let (_, page) = app.get(&alice, &path).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 3, "{page}");
}
