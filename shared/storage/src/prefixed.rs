//! A [`BlobStore`] view of one sub-folder of another store: how a deployment root holding
//! many indexes hands each index its own store.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use super::{validate_key, BlobStore};
use squash_core::error::Result;

/// The objects of `inner` under `prefix/`, addressed by keys relative to it.
#[derive(Debug, Clone)]
pub struct PrefixedStore {
    inner: Arc<dyn BlobStore>,
    prefix: String,
}

impl PrefixedStore {
    /// Returns the view of `inner` under `prefix` (a valid key: relative, no `.`/`..`).
    pub fn try_new(inner: Arc<dyn BlobStore>, prefix: &str) -> Result<Self> {
        validate_key(prefix)?;
        Ok(PrefixedStore {
            inner,
            prefix: format!("{prefix}/"),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl BlobStore for PrefixedStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inner.get(&self.full_key(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.inner.get_range(&self.full_key(key), range).await
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, crate::ObjectTag)> {
        self.inner.get_tagged(&self.full_key(key)).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &crate::PutCondition,
    ) -> Result<()> {
        self.inner
            .put_if(&self.full_key(key), bytes, condition)
            .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.inner.put(&self.full_key(key), bytes).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let keys = self.inner.list(&self.full_key(prefix)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_string))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.full_key(key)).await
    }

    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.inner.describe(),
            self.prefix.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn prefixed_store_passes_conformance_and_stays_inside_its_prefix() {
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        root.put("other/x", b"outside".to_vec()).await.expect("put");
        let store = PrefixedStore::try_new(Arc::clone(&root), "films").expect("prefix");
        crate::conformance::run(&store).await;
        store.put("a", b"inside".to_vec()).await.expect("put");
        assert_eq!(root.get("films/a").await.expect("get"), b"inside");
        assert!(store
            .list("")
            .await
            .expect("list")
            .iter()
            .all(|k| !k.contains("other")));
        assert!(PrefixedStore::try_new(root, "../etc").is_err());
    }
}
