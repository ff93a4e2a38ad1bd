//! Uploaded files: upload into a conversation, download, delete, the check that a message
//! names only files of its own conversation, and the clean-up when a conversation goes.
//! Whoever may read a conversation may upload to it and download its files; another company's
//! file is "not found", exactly like another company's conversation.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::{ChatService, On, ServiceError, ServiceResult};
use crate::auth::Principal;
use crate::domain::attachment::{
    clean_file_name, conversation_prefix, detect_type, empty_upload, storage_key, StoredAttachment, UploadedAttachment,
};
use crate::domain::audit::AuditAction;
use crate::domain::time::now;
use crate::domain::{is_object_id, new_object_id, Attachment, Conversation, ValidationError};
use crate::files::{FileError, FileStorage};

const ATTACHMENT_NOT_FOUND: &str = "Attachment not found";

/// A file as received: the bytes (at most `MAX_UPLOAD_BYTES`, enforced while reading), the
/// client's name for it and the type it claimed.
pub struct Upload {
    pub name: String,
    pub claimed_type: Option<String>,
    pub bytes: Bytes,
}

/// A file to send back: its record and its bytes as a stream.
pub struct Download {
    pub attachment: StoredAttachment,
    pub body: BoxStream<'static, Result<Bytes, FileError>>,
}

/// The path under which a file is served; a message's attachment URL with this path (on any
/// host: the service may be reached under several names) refers to an upload.
pub fn attachment_path(id: &str) -> String {
    format!("/api/attachments/{id}")
}

/// The upload an attachment URL names, when its path is `/api/attachments/<id>`.
fn uploaded_id(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let id = url.path().strip_prefix("/api/attachments/")?;
    is_object_id(id).then(|| id.to_ascii_lowercase())
}

fn storage_failed(e: FileError) -> ServiceError {
    tracing::warn!(error = %e, "file storage failed");
    ServiceError::Unavailable(e.to_string())
}

impl ChatService {
    fn files(&self) -> ServiceResult<&FileStorage> {
        self.files.as_ref().ok_or_else(|| ServiceError::Unavailable("no file storage configured".into()))
    }

    /// Stores a file in a conversation the caller may read and answers what a message's
    /// `attachments` takes; `base_url` is how clients reach this service.
    pub async fn upload_attachment(
        &self,
        p: &Principal,
        conversation_id: &str,
        upload: Upload,
        base_url: &str,
    ) -> ServiceResult<UploadedAttachment> {
        let c = self.conversation_for(p, conversation_id).await?;
        if upload.bytes.is_empty() {
            return Err(empty_upload().into());
        }
        let name = clean_file_name(&upload.name);
        let file_type = detect_type(&upload.bytes, &upload.name, upload.claimed_type.as_deref())
            .map_err(|refusal| ServiceError::UnsupportedMediaType(refusal.to_string()))?;
        let id = new_object_id();
        let record = StoredAttachment {
            key: storage_key(&c.company_id, &c.id, &id),
            id,
            company_id: c.company_id.clone(),
            conversation_id: c.id.clone(),
            uploader_id: p.user_id.clone(),
            media_type: file_type.media_type.to_string(),
            name,
            size: upload.bytes.len() as u64,
            created_at: now(),
        };
        let files = self.files()?;
        files.put(&record.key, upload.bytes).await.map_err(storage_failed)?;
        if let Err(e) = self.store.insert_attachment(&record).await {
            // Without its record nobody could reach the file again: take it back out.
            let _ = files.delete(&record.key).await;
            return Err(e.into());
        }
        let on = On::conversation(&c.id).subject(&record.id).detail(format!("{} {} bytes", record.media_type, record.size));
        self.auditor.record(p, AuditAction::AttachmentUpload, Some(&c.company_id), on);
        Ok(UploadedAttachment {
            url: format!("{base_url}{}", attachment_path(&record.id)),
            id: record.id,
            kind: record.media_type,
            name: record.name,
            size: record.size,
        })
    }

    /// A file whose conversation the caller may read; anything else is "not found".
    async fn readable_attachment(&self, p: &Principal, id: &str) -> ServiceResult<StoredAttachment> {
        if !is_object_id(id) {
            return Err(ValidationError::field("Invalid id", "id", "must be a 24-character hex id").into());
        }
        let a = self
            .store
            .get_attachment(&id.to_ascii_lowercase())
            .await?
            .ok_or(ServiceError::NotFound(ATTACHMENT_NOT_FOUND))?;
        match self.conversation_for(p, &a.conversation_id).await {
            Ok(c) if c.company_id == a.company_id => Ok(a),
            Ok(_) | Err(ServiceError::NotFound(_)) => Err(ServiceError::NotFound(ATTACHMENT_NOT_FOUND)),
            Err(e) => Err(e),
        }
    }

    pub async fn download_attachment(&self, p: &Principal, id: &str) -> ServiceResult<Download> {
        let attachment = self.readable_attachment(p, id).await?;
        let body = match self.files()?.get(&attachment.key).await {
            Ok(body) => body,
            Err(FileError::NotFound) => {
                tracing::warn!(attachment = %attachment.id, key = %attachment.key, "attachment record without its file");
                return Err(ServiceError::NotFound(ATTACHMENT_NOT_FOUND));
            }
            Err(e) => return Err(storage_failed(e)),
        };
        let on = On::conversation(&attachment.conversation_id).subject(&attachment.id);
        self.auditor.record(p, AuditAction::AttachmentDownload, Some(&attachment.company_id), on);
        Ok(Download { attachment, body })
    }

    /// Users of the conversation's company may delete its files; a widget only those it uploaded.
    /// Messages that name the file keep their link, which then answers 404.
    pub async fn delete_attachment(&self, p: &Principal, id: &str) -> ServiceResult<()> {
        let a = self.readable_attachment(p, id).await?;
        if p.widget_conversation().is_some() && a.uploader_id != p.user_id {
            return Err(ServiceError::NotFound(ATTACHMENT_NOT_FOUND));
        }
        if !self.store.delete_attachment(&a.id).await? {
            return Err(ServiceError::NotFound(ATTACHMENT_NOT_FOUND));
        }
        // The record is gone, so the file can no longer be reached; a failure here leaves
        // only an orphan, which the conversation's deletion removes.
        if let Err(e) = self.files()?.delete(&a.key).await {
            tracing::warn!(attachment = %a.id, error = %e, "file of a deleted attachment not removed");
        }
        self.auditor.record(p, AuditAction::AttachmentDelete, Some(&a.company_id), On::conversation(&a.conversation_id).subject(&a.id));
        Ok(())
    }

    /// Attachments that name an upload (`/api/attachments/<id>`) must name one of this
    /// conversation; they then carry the upload's own type, name and size, whatever the client
    /// wrote. Other URLs are left as the contract allows.
    pub(super) async fn check_attachments(&self, c: &Conversation, attachments: &mut [Attachment]) -> ServiceResult<()> {
        for (i, a) in attachments.iter_mut().enumerate() {
            let Some(id) = uploaded_id(&a.url) else { continue };
            match self.store.get_attachment(&id).await? {
                Some(stored) if stored.conversation_id == c.id && stored.company_id == c.company_id => {
                    a.kind = stored.media_type;
                    a.name = stored.name;
                    a.size = Some(stored.size);
                }
                _ => {
                    let field = format!("attachments[{i}]");
                    return Err(ValidationError::field("Invalid message data", &field, "is not a file uploaded to this conversation").into());
                }
            }
        }
        Ok(())
    }

    /// Removes a deleted conversation's files and their records, in the background: the
    /// deletion is answered at once, and a failure is logged (the files stay under the
    /// conversation's folder and are removed by deleting it again by hand).
    pub(super) fn delete_conversation_files(&self, c: &Conversation) {
        let (store, files) = (self.store.clone(), self.files.clone());
        let (conversation_id, prefix) = (c.id.clone(), conversation_prefix(&c.company_id, &c.id));
        tokio::spawn(async move {
            if let Err(e) = store.delete_conversation_attachments(&conversation_id).await {
                tracing::warn!(conversation = %conversation_id, error = %e, "attachment records of a deleted conversation not removed");
            }
            if let Some(files) = files {
                match files.delete_prefix(&prefix).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(conversation = %conversation_id, files = n, "files of a deleted conversation removed"),
                    Err(e) => tracing::warn!(conversation = %conversation_id, prefix = %prefix, error = %e, "files of a deleted conversation not removed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_are_recognised_on_any_host() {
        let id = "0123456789abcdef01234567";
        assert_eq!(uploaded_id(&format!("https://chat.example.com/api/attachments/{id}")).as_deref(), Some(id));
        assert_eq!(uploaded_id(&format!("http://127.0.0.1:4004/api/attachments/{id}?x=1")).as_deref(), Some(id));
        assert_eq!(uploaded_id("https://cdn.example.com/files/a.png"), None);
        assert_eq!(uploaded_id("https://x/api/attachments/not-an-id"), None);
    }
}
