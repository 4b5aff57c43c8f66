//! Incomplete multipart uploads of an S3 bucket: listed (`ListMultipartUploads`, through
//! a URL presigned by object_store's own SigV4 signer, which object_store has no call for)
//! and aborted.
//!
//! A writer aborts its own upload when a write fails ([`crate::artifacts`]'s `AbortLater`),
//! but one upload is known to no writer: one whose creation S3 carried out while the
//! answer was lost (an outage cutting the connection mid-request). So a write of a key
//! first aborts what earlier writes of that key left ([`S3Uploads::abort_stale`]: a job's
//! attempts run one at a time), and a write whose creation failed has the uploads of its
//! key begun before the failure aborted in the background once S3 answers again
//! ([`S3Uploads::abort_stale_later`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use serde::Deserialize;

use crate::StoreError;

/// Backoff between background tries against a store that does not answer (doubling from
/// the first, at most the second), and how many tries: about 10 minutes in all.
const BACKGROUND_RETRY: (Duration, Duration, u32) =
    (Duration::from_secs(2), Duration::from_secs(15), 40);

/// The wait before each background try (40: about 10 minutes): none before the first
/// unless `delayed`, then doubling from 2 s up to 15 s.
pub(crate) fn background_tries(delayed: bool) -> impl Iterator<Item = Duration> {
    let (first, longest, tries) = BACKGROUND_RETRY;
    let mut next = first;
    (0..tries).map(move |i| {
        if i == 0 && !delayed {
            return Duration::ZERO;
        }
        let wait = next;
        next = (next * 2).min(longest);
        wait
    })
}

/// How long a listing request may take before it counts as failed.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The incomplete uploads of one S3 store (a bucket, under a key prefix).
#[derive(Debug)]
pub(crate) struct S3Uploads {
    s3: Arc<AmazonS3>,
    /// The store's key prefix with its trailing `/` (`deploy/`), or empty.
    prefix: String,
    http: reqwest::Client,
}

/// The part of S3's `ListMultipartUploadsResult` used here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    upload: Vec<Upload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
    initiated: DateTime<Utc>,
}

fn parse_listing(xml: &str) -> Result<ListResult, StoreError> {
    quick_xml::de::from_str(xml).map_err(|e| {
        StoreError::from(object_store::Error::Generic {
            store: "S3",
            source: format!("an unreadable list of multipart uploads: {e}").into(),
        })
    })
}

impl S3Uploads {
    /// The uploads of `s3`, whose keys start with `prefix` (the store's, without slashes
    /// at either end; empty for none).
    pub(crate) fn new(s3: Arc<AmazonS3>, prefix: &str) -> Self {
        Self {
            s3,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            http: reqwest::Client::new(),
        }
    }

    /// Aborts the incomplete uploads of `path` (relative to the store's prefix), those
    /// begun before `before` when given; returns how many.
    ///
    /// # Errors
    /// S3 could not be listed or an abort failed (an upload already gone is not an error).
    pub(crate) async fn abort_stale(
        &self,
        path: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<usize, StoreError> {
        let key = format!("{}{path}", self.prefix);
        let location = ObjectPath::from(key.as_str());
        let mut aborted = 0;
        for upload in self.list(&key).await? {
            if upload.key != key || before.is_some_and(|b| upload.initiated >= b) {
                continue;
            }
            match self.s3.abort_multipart(&location, &upload.upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => aborted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(aborted)
    }

    /// [`S3Uploads::abort_stale`] of the uploads of `path` begun before now, in the
    /// background, tried until S3 answers (see [`BACKGROUND_RETRY`]).
    pub(crate) fn abort_stale_later(self: &Arc<Self>, path: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (uploads, path, before) = (Arc::clone(self), path.to_string(), Utc::now());
        runtime.spawn(async move {
            for wait in background_tries(true) {
                tokio::time::sleep(wait).await;
                match uploads.abort_stale(&path, Some(before)).await {
                    Ok(0) => return,
                    Ok(n) => {
                        tracing::info!(path, n, "aborted uploads a failed write left");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, path, "cannot list uploads yet"),
                }
            }
            tracing::warn!(
                path,
                "gave up looking for uploads a failed write left: the bucket's lifecycle rule \
                 expires them"
            );
        });
    }

    /// Every incomplete upload whose key starts with `key`.
    async fn list(&self, key: &str) -> Result<Vec<Upload>, StoreError> {
        let mut uploads = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", String::new()), ("prefix", key.to_string())];
            if let Some((key_marker, upload_marker)) = after.take() {
                query.push(("key-marker", key_marker));
                query.push(("upload-id-marker", upload_marker));
            }
            let url = self
                .s3
                .signed_url_opts(
                    reqwest::Method::GET,
                    &ObjectPath::from(""),
                    LIST_TIMEOUT,
                    &SignedUrlOptions::new().with_query(query),
                )
                .await?;
            let failed = |source: Box<dyn std::error::Error + Send + Sync>| {
                StoreError::from(object_store::Error::Generic {
                    store: "S3",
                    source,
                })
            };
            let response = self
                .http
                .get(url)
                .timeout(LIST_TIMEOUT)
                .send()
                .await
                .map_err(|e| failed(Box::new(e)))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| failed(Box::new(e)))?;
            if !status.is_success() {
                let head: String = body.chars().take(300).collect();
                return Err(failed(
                    format!("listing multipart uploads: {status}: {head}").into(),
                ));
            }
            let page = parse_listing(&body)?;
            uploads.extend(page.upload);
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => after = Some((k, u)),
                _ => return Ok(uploads),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_tries_back_off_to_15_s_for_about_ten_minutes() {
        let secs =
            |delayed| -> Vec<u64> { background_tries(delayed).map(|d| d.as_secs()).collect() };
        let now = secs(false);
        assert_eq!(now[..6], [0, 2, 4, 8, 15, 15]);
        assert_eq!(secs(true)[..5], [2, 4, 8, 15, 15]);
        assert_eq!(now.len(), 40);
        let total: u64 = secs(true).iter().sum();
        assert!((540..=660).contains(&total), "{total} s");
    }

    #[test]
    fn a_listing_gives_each_upload_and_where_the_next_page_starts() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker/><UploadIdMarker/>
  <NextKeyMarker>deploy/jobs/t/j/output-0.csv</NextKeyMarker>
  <NextUploadIdMarker>u2</NextUploadIdMarker>
  <Prefix>deploy/jobs/t/j/output-0.csv</Prefix><MaxUploads>2</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload><Key>deploy/jobs/t/j/output-0.csv</Key><UploadId>u1</UploadId>
    <Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>
    <Initiated>2026-12-07T07:47:39.000Z</Initiated></Upload>
  <Upload><Key>deploy/jobs/t/j/output-0.csv</Key><UploadId>u2</UploadId>
    <Initiated>2026-12-07T07:48:01.250Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_listing(xml).unwrap();
        let ids: Vec<&str> = page.upload.iter().map(|u| u.upload_id.as_str()).collect();
        assert_eq!(ids, ["u1", "u2"]);
        assert_eq!(
            page.upload[1].initiated,
            "2026-12-07T07:48:01.250Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("u2"));

        let empty = parse_listing(
            r#"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#,
        )
        .unwrap();
        assert!(empty.upload.is_empty() && !empty.is_truncated);
    }
}
