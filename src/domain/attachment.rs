//! Uploaded files: which types are accepted and how a type is decided. The type comes from the
//! bytes (magic numbers; text is valid UTF-8 without NUL), never from what the client claims;
//! the claim and the file name's extension must agree with it, or the upload is refused, so a
//! file cannot be made to pass for another type. Also the cleaning of the displayed file name
//! and the storage key, which never contains anything the client sent.

use serde::Serialize;
use utoipa::ToSchema;

use super::time::Timestamp;
use super::{sanitize_text, ValidationError};

/// Largest accepted upload, in bytes (10 MiB).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
const MAX_NAME_CHARS: usize = 255;

/// An accepted file type: its media type and the file name extensions that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub media_type: &'static str,
    extensions: &'static [&'static str],
    /// Other media types clients send for it (browsers on Windows call CSV `application/vnd.ms-excel`).
    aliases: &'static [&'static str],
}

impl FileType {
    /// Shown inline by a browser (images); everything else is downloaded.
    pub fn inline(&self) -> bool {
        self.media_type.starts_with("image/")
    }

    fn claimed_as(&self, claim: &str) -> bool {
        claim == self.media_type || self.aliases.contains(&claim)
    }
}

const fn file_type(media_type: &'static str, extensions: &'static [&'static str], aliases: &'static [&'static str]) -> FileType {
    FileType { media_type, extensions, aliases }
}

pub const JPEG: FileType = file_type("image/jpeg", &["jpg", "jpeg", "jpe", "jfif"], &["image/jpg", "image/pjpeg"]);
pub const PNG: FileType = file_type("image/png", &["png"], &["image/x-png"]);
pub const GIF: FileType = file_type("image/gif", &["gif"], &[]);
pub const WEBP: FileType = file_type("image/webp", &["webp"], &[]);
pub const PDF: FileType = file_type("application/pdf", &["pdf"], &["application/x-pdf"]);
pub const DOC: FileType = file_type("application/msword", &["doc"], &[]);
pub const DOCX: FileType =
    file_type("application/vnd.openxmlformats-officedocument.wordprocessingml.document", &["docx"], &[]);
pub const XLS: FileType = file_type("application/vnd.ms-excel", &["xls"], &[]);
pub const XLSX: FileType = file_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", &["xlsx"], &[]);
pub const TEXT: FileType = file_type("text/plain", &["txt", "text", "log"], &[]);
pub const MARKDOWN: FileType = file_type("text/markdown", &["md", "markdown"], &["text/x-markdown"]);
pub const CSV: FileType = file_type("text/csv", &["csv"], &["application/csv", "text/x-csv", "application/vnd.ms-excel"]);

/// A magic number check.
type Matcher = fn(&[u8]) -> bool;

/// Binary types, each recognised by its own magic number check, in the order they are tried.
const BINARY: [(FileType, Matcher); 9] = [
    (JPEG, infer::image::is_jpeg),
    (PNG, infer::image::is_png),
    (GIF, infer::image::is_gif),
    (WEBP, infer::image::is_webp),
    (PDF, infer::archive::is_pdf),
    (DOCX, infer::doc::is_docx),
    (XLSX, infer::doc::is_xlsx),
    (DOC, infer::doc::is_doc),
    (XLS, infer::doc::is_xls),
];
const TEXTS: [FileType; 3] = [TEXT, MARKDOWN, CSV];

/// Why an upload's type is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeRefusal {
    #[error("File type not allowed: only JPEG, PNG, GIF, WebP, PDF, plain text, Markdown, CSV, DOC, DOCX, XLS and XLSX")]
    NotAllowed,
    #[error("The file's content is {detected} but its name says otherwise")]
    NameMismatch { detected: &'static str },
    #[error("The file's content is {detected} but it was sent as {claimed}")]
    ClaimMismatch { detected: &'static str, claimed: String },
}

/// Decides the type of an upload from its `bytes`; `name` (the client's file name) and
/// `claimed` (the part's `Content-Type`) must agree with it. `application/octet-stream` or no
/// claim claims nothing; a name without an extension says nothing about a binary type, and
/// makes text plain text.
pub fn detect_type(bytes: &[u8], name: &str, claimed: Option<&str>) -> Result<FileType, TypeRefusal> {
    let extension = extension_of(name);
    let detected = match BINARY.iter().find(|(_, matches)| matches(bytes)) {
        Some((t, _)) => {
            if extension.as_deref().is_some_and(|e| !t.extensions.contains(&e)) {
                return Err(TypeRefusal::NameMismatch { detected: t.media_type });
            }
            *t
        }
        None if is_text(bytes) => match extension.as_deref() {
            None => TEXT,
            Some(e) => *TEXTS
                .iter()
                .find(|t| t.extensions.contains(&e))
                .ok_or(TypeRefusal::NameMismatch { detected: "text" })?,
        },
        None => return Err(TypeRefusal::NotAllowed),
    };
    let claim = claimed.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match claim.as_deref() {
        None | Some("" | "application/octet-stream") => Ok(detected),
        Some(c) if detected.claimed_as(c) => Ok(detected),
        Some(c) => Err(TypeRefusal::ClaimMismatch { detected: detected.media_type, claimed: c.chars().take(100).collect() }),
    }
}

/// Text: valid UTF-8 with no NUL (an empty file is not accepted as anything).
fn is_text(bytes: &[u8]) -> bool {
    !bytes.is_empty() && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// The lower-case extension of a file name, if it has one (`.bashrc` has none).
fn extension_of(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext.to_ascii_lowercase()),
        _ => None,
    }
}

/// The name shown for an upload: the last path component of what the client sent, without
/// control characters or markup, at most 255 characters; `file` when nothing is left.
pub fn clean_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let printable: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = sanitize_text(printable.trim());
    let cleaned: String = cleaned.trim().chars().take(MAX_NAME_CHARS).collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') { "file".to_string() } else { cleaned }
}

/// Where an upload's bytes are stored: by company and conversation, then the attachment's own
/// id. Company ids are the token's and may hold any character: one that is not a plain
/// identifier is replaced by its SHA-256, so no key can climb out of its folder.
pub fn storage_key(company_id: &str, conversation_id: &str, attachment_id: &str) -> String {
    format!("{}/{}", conversation_prefix(company_id, conversation_id), attachment_id)
}

/// The folder of a conversation's files: deleting the conversation deletes everything under it.
pub fn conversation_prefix(company_id: &str, conversation_id: &str) -> String {
    let plain = !company_id.is_empty()
        && company_id.len() <= 64
        && company_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let company = if plain {
        company_id.to_string()
    } else {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(company_id.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    };
    format!("attachments/{company}/{conversation_id}")
}

/// An uploaded file as recorded in the store (the bytes are in the file storage under `key`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttachment {
    pub id: String,
    pub company_id: String,
    pub conversation_id: String,
    /// Who uploaded it (user id, or the widget's).
    pub uploader_id: String,
    pub media_type: String,
    pub name: String,
    pub size: u64,
    pub key: String,
    pub created_at: Timestamp,
}

/// The answer to an upload, shaped as a message's `attachments` entry plus the id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadedAttachment {
    pub id: String,
    /// `GET` it with the same bearer token; put it in a message's `attachments`.
    pub url: String,
    /// The media type decided from the content.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub size: u64,
}

/// Refused because an upload is empty.
pub fn empty_upload() -> ValidationError {
    ValidationError::field("Validation failed", "file", "is empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_BYTES: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const PDF_BYTES: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";

    #[test]
    fn type_comes_from_the_bytes() {
        assert_eq!(detect_type(PNG_BYTES, "a.png", Some("image/png")), Ok(PNG));
        assert_eq!(detect_type(PNG_BYTES, "noext", None), Ok(PNG));
        assert_eq!(detect_type(PDF_BYTES, "doc.PDF", Some("application/octet-stream")), Ok(PDF));
        assert_eq!(detect_type(b"hello", "notes.txt", Some("text/plain; charset=utf-8")), Ok(TEXT));
        assert_eq!(detect_type(b"# T", "readme.md", None), Ok(MARKDOWN));
        assert_eq!(detect_type(b"a,b\n1,2", "t.csv", Some("application/vnd.ms-excel")), Ok(CSV));
        assert_eq!(detect_type("héllo".as_bytes(), "x", None), Ok(TEXT));
    }

    #[test]
    fn mismatches_and_unknown_types_are_refused() {
        assert_eq!(detect_type(PNG_BYTES, "a.pdf", None), Err(TypeRefusal::NameMismatch { detected: "image/png" }));
        assert!(matches!(detect_type(PNG_BYTES, "a.png", Some("image/gif")), Err(TypeRefusal::ClaimMismatch { .. })));
        assert!(matches!(detect_type(b"<script>", "x.html", None), Err(TypeRefusal::NameMismatch { .. })));
        assert!(matches!(detect_type(b"<svg/>", "x.svg", Some("image/svg+xml")), Err(TypeRefusal::NameMismatch { .. })));
        assert!(matches!(detect_type(b"text", "x.txt", Some("text/html")), Err(TypeRefusal::ClaimMismatch { .. })));
        assert_eq!(detect_type(b"MZ\x90\0\x03\0\0\0", "x.exe", None), Err(TypeRefusal::NotAllowed));
        assert_eq!(detect_type(b"a\0b", "x.txt", None), Err(TypeRefusal::NotAllowed));
        assert_eq!(detect_type(b"", "x.txt", None), Err(TypeRefusal::NotAllowed));
    }

    #[test]
    fn names_and_keys_carry_nothing_unsafe() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(clean_file_name(".."), "file");
        assert_eq!(clean_file_name("a\u{0}b\n.txt"), "ab.txt");
        assert!(!clean_file_name("<script>alert(1)</script>x.txt").contains('<'));
        assert_eq!(storage_key("acme", "c1", "a1"), "attachments/acme/c1/a1");
        let key = storage_key("../evil/..", "c1", "a1");
        assert!(key.starts_with("attachments/") && !key.contains(".."), "{key}");
    }
}
