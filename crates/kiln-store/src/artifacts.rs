//! The artifact store, through the `object_store` crate: a local directory by default, any
//! `s3://bucket/prefix` URL by configuration (credentials and endpoint from the usual
//! `AWS_*` environment variables). Uploads and downloads stream: no body is held in memory,
//! so multi-GB artifacts cost a few chunk buffers.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::{Result, StoreError};

/// One entry of a directory listing, as `mlflow-artifacts` returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// Part size for multipart uploads; also the most an upload buffers per part in flight.
const CHUNK: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently; bounds an upload's memory to about CHUNK × (this + 1).
const MAX_PARTS_IN_FLIGHT: usize = 2;

#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.url)
            .finish()
    }
}

impl ArtifactStore {
    /// Opens `url`: `s3://bucket[/prefix]`, `file:///dir`, or a plain directory path
    /// (created if missing).
    pub fn open(url: &str) -> Result<ArtifactStore> {
        let inner: Arc<dyn ObjectStore> = if url.starts_with("s3://") || url.starts_with("s3a://") {
            let parsed = url::Url::parse(url)
                .map_err(|e| StoreError::Config(format!("invalid artifact URL {url:?}: {e}")))?;
            let bucket = parsed.host_str().ok_or_else(|| {
                StoreError::Config(format!("artifact URL {url:?} names no bucket"))
            })?;
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| StoreError::Config(format!("cannot open {url}: {e}")))?;
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!("cannot create artifact directory {dir}: {e}"))
            })?;
            let fs = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| {
                    StoreError::Config(format!("cannot open artifact directory {dir}: {e}"))
                })?
                .with_automatic_cleanup(true)
                // An acknowledged upload must survive a crash like an acknowledged write.
                .with_fsync(true);
            Arc::new(fs)
        };
        Ok(ArtifactStore {
            inner,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams `body` into `path`, replacing what was there. Returns the bytes written.
    /// The object appears only when the whole body arrived; a failed upload leaves nothing.
    pub async fn put_stream<S, E>(&self, path: &str, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let location = artifact_path(path)?;
        let upload = self.inner.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut written = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    written += bytes.len() as u64;
                    if let Err(e) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                        let _ = writer.abort().await;
                        return Err(e.into());
                    }
                    writer.put(bytes);
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::invalid(format!(
                        "the upload of '{path}' was interrupted: {e}"
                    )));
                }
            }
        }
        writer.finish().await?;
        Ok(written)
    }

    /// Opens `path` for streaming: its size and a stream of its bytes.
    pub async fn get_stream(&self, path: &str) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
        let location = artifact_path(path)?;
        let got = self.inner.get(&location).await?;
        let size = got.meta.size;
        let stream = got.into_stream().map_err(StoreError::from).boxed();
        Ok((size, stream))
    }

    /// Lists the direct children of directory `dir` ("" for the root). Paths in the result
    /// are relative to `dir`'s parent listing root, as MLflow reports them: `dir/child`.
    pub async fn list(&self, dir: &str) -> Result<Vec<FileInfo>> {
        let dir = dir.trim_matches('/');
        let prefix = if dir.is_empty() {
            None
        } else {
            Some(artifact_path(dir)?)
        };
        let listing = match self.inner.list_with_delimiter(prefix.as_ref()).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for p in listing.common_prefixes {
            out.push(FileInfo {
                path: p.to_string(),
                is_dir: true,
                file_size: None,
            });
        }
        for m in listing.objects {
            // The local store keeps in-progress multipart uploads beside their target as
            // `name#N`; they are not artifacts.
            if m.location.filename().is_some_and(is_staging_file) {
                continue;
            }
            out.push(FileInfo {
                path: m.location.to_string(),
                is_dir: false,
                file_size: Some(m.size),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes a file, or every file under a directory. Deleting nothing is NotFound.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let location = artifact_path(path)?;
        match self.inner.head(&location).await {
            Ok(_) => {
                self.inner.delete(&location).await?;
                return Ok(());
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let children: Vec<Path> = self
            .inner
            .list(Some(&location))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        if children.is_empty() {
            return Err(StoreError::not_found(format!(
                "Artifact '{path}' not found"
            )));
        }
        for child in children {
            self.inner.delete(&child).await?;
        }
        Ok(())
    }

    /// Whether `path` names a file.
    pub async fn is_file(&self, path: &str) -> Result<bool> {
        match self.inner.head(&artifact_path(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// `name#123`: an in-progress upload of the local store, not an artifact.
fn is_staging_file(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks an artifact path supplied by a client: relative, no `..`, no empty parts.
pub fn artifact_path(path: &str) -> Result<Path> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(StoreError::invalid("Invalid artifact path: it is empty"));
    }
    if trimmed
        .split('/')
        .any(|p| p == ".." || p == "." || p.is_empty())
        || path.contains('\\')
    {
        return Err(StoreError::invalid(format!(
            "Invalid artifact path: '{path}'. Paths must be relative and may not contain '..'"
        )));
    }
    Path::parse(trimmed)
        .map_err(|e| StoreError::invalid(format!("Invalid artifact path: '{path}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        assert!(artifact_path("1/abc/artifacts/model/MLmodel").is_ok());
        assert!(artifact_path("../etc/passwd").is_err());
        assert!(artifact_path("a/../../b").is_err());
        assert!(artifact_path("").is_err());
        assert!(artifact_path("a//b").is_err());
        assert!(is_staging_file("model.bin#3"));
        assert!(!is_staging_file("a#b.txt"));
        assert!(!is_staging_file("plain"));
    }

    #[tokio::test]
    async fn stream_round_trip_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        let chunks: Vec<std::result::Result<Bytes, std::io::Error>> = (0..20)
            .map(|i| Ok(Bytes::from(vec![i as u8; 1024 * 1024])))
            .collect();
        let n = store
            .put_stream("1/run/artifacts/big.bin", futures::stream::iter(chunks))
            .await
            .unwrap();
        assert_eq!(n, 20 * 1024 * 1024);
        let (size, stream) = store.get_stream("1/run/artifacts/big.bin").await.unwrap();
        assert_eq!(size, n);
        let all: Vec<Bytes> = stream.try_collect().await.unwrap();
        let joined: Vec<u8> = all.concat();
        assert_eq!(joined.len() as u64, n);
        assert_eq!(joined[5 * 1024 * 1024], 5);
        let listing = store.list("1/run/artifacts").await.unwrap();
        assert_eq!(listing.len(), 1);
        assert_eq!(listing[0].path, "1/run/artifacts/big.bin");
        assert_eq!(listing[0].file_size, Some(n));
        store.delete("1/run").await.unwrap();
        assert!(store.list("1/run/artifacts").await.unwrap().is_empty());
        assert!(matches!(
            store.delete("1/run").await,
            Err(StoreError::NotFound(_))
        ));
    }
}
