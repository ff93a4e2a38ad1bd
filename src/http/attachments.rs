//! /api/conversations/:id/attachments (upload) and /api/attachments/:id (download, delete).
//! The upload is read as it streams in and refused once it passes `MAX_UPLOAD_BYTES`, so no
//! request can make the node buffer more than that.

use axum::body::Body as ResponseBody;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::conversations::ConversationPath;
use super::error::{ApiError, ApiErrors, ApiResult, ErrorBody, RequestPart};
use super::extract::{Caller, PathParams};
use super::{ApiContext, Success};
use crate::domain::attachment::{UploadedAttachment, MAX_UPLOAD_BYTES};
use crate::domain::ValidationError;
use crate::service::Upload;

const TAG: &str = "attachments";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AttachmentPath {
    /// Attachment id: 24 hex characters.
    pub id: String,
}

/// `multipart/form-data` with one file in the field `file`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// At most 10 MiB: JPEG, PNG, GIF, WebP, PDF, plain text, Markdown, CSV, DOC, DOCX, XLS or XLSX.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file into a conversation
///
/// Anyone who may read the conversation (a widget: its own). The type is decided from the
/// content; the part's `Content-Type` and the file name's extension must agree with it (415
/// otherwise). The answer is ready to put in a message's `attachments`: messages may name
/// uploads of their own conversation only.
#[utoipa::path(
    post, path = "/conversations/{id}/attachments", tag = TAG, operation_id = "uploadAttachment", security(("bearer" = [])),
    params(ConversationPath),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = UploadedAttachment),
        (status = 413, description = "Over 10 MiB", body = ErrorBody),
        (status = 415, description = "Not an accepted type, or not the type its name or Content-Type says", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn upload(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<(StatusCode, Json<UploadedAttachment>)> {
    let mut multipart = multipart.map_err(|e| ApiError::Malformed(RequestPart::Body, e.body_text()))?;
    let upload = read_file_field(&mut multipart).await?;
    let base_url = base_url(&ctx, &headers)?;
    let answer = ctx.service.upload_attachment(&p, &id, upload, &base_url).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The `file` field, read chunk by chunk up to `MAX_UPLOAD_BYTES`; other fields are skipped.
async fn read_file_field(multipart: &mut Multipart) -> ApiResult<Upload> {
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::Malformed(RequestPart::Body, e.body_text())
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_string();
        let claimed_type = field.content_type().map(str::to_string);
        let mut bytes = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Upload { name, claimed_type, bytes: bytes.freeze() });
    }
    Err(ValidationError::field("Validation failed", "file", "is required (multipart/form-data field \"file\")").into())
}

/// How clients reach this service: `PUBLIC_URL`, else `http://` and the request's `Host`.
fn base_url(ctx: &ApiContext, headers: &HeaderMap) -> ApiResult<String> {
    if let Some(url) = &ctx.public_url {
        return Ok(url.clone());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    match url::Url::parse(&format!("http://{host}/")) {
        Ok(url) if url.path() == "/" && url.host().is_some() && url.query().is_none() => {
            Ok(url.as_str().trim_end_matches('/').to_string())
        }
        _ => Err(ValidationError::field("Validation failed", "Host", "must name this service").into()),
    }
}

/// Download a file
///
/// To whoever may read its conversation (a widget: its own); another company's file is 404.
/// Served with its type, `Content-Disposition` (inline for images, attachment otherwise)
/// and `X-Content-Type-Options: nosniff`.
#[utoipa::path(
    get, path = "/attachments/{id}", tag = TAG, operation_id = "downloadAttachment", security(("bearer" = [])),
    params(AttachmentPath),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream"), ApiErrors),
)]
pub async fn download(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(AttachmentPath { id }): PathParams<AttachmentPath>,
) -> ApiResult<Response> {
    let download = ctx.service.download_attachment(&p, &id).await?;
    let a = &download.attachment;
    let inline = a.media_type.starts_with("image/");
    let content_type = HeaderValue::from_str(&a.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&a.name, inline)).unwrap_or(HeaderValue::from_static("attachment"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_DISPOSITION, disposition),
        (header::CONTENT_LENGTH, HeaderValue::from(a.size)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
    ];
    Ok((headers, ResponseBody::from_stream(download.body)).into_response())
}

/// `inline` or `attachment`, with an ASCII `filename` fallback and the exact name in
/// `filename*` (RFC 6266, RFC 8187).
fn content_disposition(name: &str, inline: bool) -> String {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Delete a file
///
/// Users of its company; a widget only what it uploaded. Messages that name it keep the
/// link, which then answers 404.
#[utoipa::path(
    delete, path = "/attachments/{id}", tag = TAG, operation_id = "deleteAttachment", security(("bearer" = [])),
    params(AttachmentPath),
    responses((status = 200, description = "Deleted", body = Success), ApiErrors),
)]
pub async fn delete(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(AttachmentPath { id }): PathParams<AttachmentPath>,
) -> ApiResult<Json<Success>> {
    ctx.service.delete_attachment(&p, &id).await?;
    Ok(Json(Success::yes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_names_are_safe_and_exact() {
        assert_eq!(content_disposition("a b.pdf", false), "attachment; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf");
        let d = content_disposition("naïve\"x.png", true);
        assert!(d.starts_with("inline; filename=\"na_ve_x.png\""), "{d}");
        assert!(d.ends_with("filename*=UTF-8''na%C3%AFve%22x.png"), "{d}");
    }
}
