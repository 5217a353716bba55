//! The low-level S3 multipart calls (create, put part n, complete, abort) for resumable uploads
//! (`vod_stream.tusstore.S3Store`): `obstore` has only a buffered writer, whose parts cannot
//! outlive one process, while a tus upload's parts are written by many requests on many
//! replicas. The client is the data plane's own (`origin::s3_store`), with a few retries.
//!
//! Every call blocks its caller on a small runtime of its own; the Python binding releases the
//! GIL around it and the asyncio side runs it in a thread.

use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, PutPayload, RetryConfig};

use crate::config::OriginConfig;

/// The longest one call may take (a part is a few MiB; S3 answers the rest at once).
const CALL_SECONDS: u64 = 120;

/// Why a multipart call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartError {
    /// No such upload (aborted, completed, or expired by the bucket).
    NotFound(String),
    /// Anything else: refused, unreachable, timed out.
    Failed(String),
}

impl MultipartError {
    fn from_store(error: object_store::Error) -> MultipartError {
        match error {
            object_store::Error::NotFound { .. } => MultipartError::NotFound(error.to_string()),
            other => MultipartError::Failed(other.to_string()),
        }
    }
}

pub struct Multipart {
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl Multipart {
    /// The client of the `VOD_S3_*` settings (`origin` must be `s3`).
    pub fn from_config(cfg: &OriginConfig) -> Result<Multipart, String> {
        if cfg.origin != "s3" {
            return Err(format!("multipart uploads need the s3 origin, not {:?}", cfg.origin));
        }
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(CALL_SECONDS),
        };
        let store = crate::origin::s3_store(cfg, retry)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vod-multipart")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Multipart { store, runtime, timeout: Duration::from_secs(CALL_SECONDS) })
    }

    fn run<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, MultipartError> {
        self.runtime.block_on(async {
            match tokio::time::timeout(self.timeout, call).await {
                Err(_) => Err(MultipartError::Failed(format!("no answer in {CALL_SECONDS} s"))),
                Ok(result) => result.map_err(MultipartError::from_store),
            }
        })
    }

    /// CreateMultipartUpload of `key` (the whole key, prefix included): the upload id.
    pub fn create(&self, key: &str) -> Result<String, MultipartError> {
        self.run(self.store.create_multipart(&StorePath::from(key)))
    }

    /// UploadPart number `index + 1` (a part uploaded again replaces the earlier one): its ETag.
    pub fn put_part(&self, key: &str, id: &str, index: usize, data: &[u8]) -> Result<String, MultipartError> {
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        let part = self.run(self.store.put_part(&StorePath::from(key), &id.to_string(), index, payload))?;
        Ok(part.content_id)
    }

    /// CompleteMultipartUpload with the parts' ETags in order (part `i` is number `i + 1`):
    /// the object's ETag.
    pub fn complete(
        &self,
        key: &str,
        id: &str,
        etags: Vec<String>,
    ) -> Result<Option<String>, MultipartError> {
        let parts = etags.into_iter().map(|content_id| PartId { content_id }).collect();
        let done = self.run(self.store.complete_multipart(&StorePath::from(key), &id.to_string(), parts))?;
        Ok(done.e_tag)
    }

    /// AbortMultipartUpload: its parts are deleted.
    pub fn abort(&self, key: &str, id: &str) -> Result<(), MultipartError> {
        self.run(self.store.abort_multipart(&StorePath::from(key), &id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::Multipart;
    use crate::config::OriginConfig;

    #[test]
    fn only_the_s3_origin_has_multipart_uploads() {
        let file = OriginConfig::default();
        assert!(Multipart::from_config(&file).is_err());
        let s3 = OriginConfig {
            origin: "s3".into(),
            s3_endpoint: Some("http://127.0.0.1:9".into()),
            s3_bucket: Some("media".into()),
            ..OriginConfig::default()
        };
        assert!(Multipart::from_config(&s3).is_ok());
        let no_bucket = OriginConfig { s3_bucket: None, ..s3 };
        assert!(Multipart::from_config(&no_bucket).is_err());
    }
}
