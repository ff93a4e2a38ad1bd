//! Where uploaded files' bytes live, behind one interface (`object_store`): a directory under
//! `DATA_DIR` by default, so nothing needs setting up, or an S3-compatible bucket in
//! production (`S3_BUCKET`). Keys are made by `domain::attachment::storage_key` and never
//! contain anything a client sent.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::config::{Config, S3Settings};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("file storage: {0}")]
    Storage(String),
}

impl From<object_store::Error> for FileError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => FileError::NotFound,
            other => FileError::Storage(other.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct FileStorage {
    inner: Arc<dyn ObjectStore>,
    /// `local` or `s3`, for logs and `/health`.
    kind: &'static str,
}

impl FileStorage {
    /// The bucket when `S3_BUCKET` is set, else `DATA_DIR/files`.
    pub fn from_config(config: &Config) -> Result<Self, FileError> {
        match &config.s3 {
            Some(s3) => Self::s3(s3),
            None => Self::local(&config.data_dir.join("files")),
        }
    }

    pub fn local(dir: &std::path::Path) -> Result<Self, FileError> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        // Empty folders left by deleted files are removed, so a conversation's folder goes with it.
        let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        Ok(FileStorage { inner: Arc::new(store), kind: "local" })
    }

    /// The usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, ...) are read from the environment; the bucket, endpoint and
    /// region from the settings. Path-style requests, which every S3-compatible server takes.
    pub fn s3(s3: &S3Settings) -> Result<Self, FileError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_virtual_hosted_style_request(false);
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(FileStorage { inner: Arc::new(builder.build()?), kind: "s3" })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), FileError> {
        self.inner.put(&Path::from(key), PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    /// The file's bytes as a stream, so a download never holds the whole file.
    pub async fn get(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, FileError>>, FileError> {
        let result = self.inner.get(&Path::from(key)).await?;
        Ok(result.into_stream().map_err(FileError::from).boxed())
    }

    /// Deleting what is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every file under `prefix` (a conversation's folder); returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, FileError> {
        let prefix = Path::from(prefix);
        let locations = self.inner.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        let deleted: Vec<Path> = self.inner.delete_stream(locations).try_collect().await?;
        Ok(deleted.len())
    }
}
