//! An in-memory store, for tests and for the embedded mode's scratch use.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    check_range, condition_holds, conflict, content_tag, validate_key, BlobStore, ObjectTag,
    PutCondition,
};
use squash_core::error::{Error, Result};

/// A [`BlobStore`] held in memory; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryStore {
    /// Returns an empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn object(&self, key: &str) -> Result<Arc<Vec<u8>>> {
        let objects = self.objects.lock().map_err(|_| poisoned())?;
        objects.get(key).cloned().ok_or_else(|| Error::NotFound {
            what: format!("object '{key}' in memory store"),
        })
    }
}

fn poisoned() -> Error {
    Error::Storage {
        message: "memory store lock poisoned by a panicked writer".to_string(),
        retryable: false,
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self.object(key)?.as_ref().clone())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let object = self.object(key)?;
        let size = object.len() as u64;
        check_range(key, &range, size)?;
        Ok(object[range.start as usize..range.end as usize].to_vec())
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, ObjectTag)> {
        let object = self.object(key)?;
        Ok((object.as_ref().clone(), content_tag(&object)))
    }

    async fn put_if(&self, key: &str, bytes: Vec<u8>, condition: &PutCondition) -> Result<()> {
        validate_key(key)?;
        let mut objects = self.objects.lock().map_err(|_| poisoned())?;
        let current_opt = objects.get(key).map(|object| content_tag(object));
        if !condition_holds(condition, current_opt.as_deref()) {
            return Err(conflict(key, condition));
        }
        objects.insert(key.to_string(), Arc::new(bytes));
        Ok(())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        validate_key(key)?;
        let mut objects = self.objects.lock().map_err(|_| poisoned())?;
        objects.insert(key.to_string(), Arc::new(bytes));
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let objects = self.objects.lock().map_err(|_| poisoned())?;
        Ok(objects
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut objects = self.objects.lock().map_err(|_| poisoned())?;
        objects.remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_conforms() {
        super::super::conformance::run(&MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_conditional_creates_have_one_winner() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        for round in 0..20 {
            let winners = super::super::conformance::concurrent_creations(
                store.clone(),
                &format!("m-{round}"),
                8,
            )
            .await;
            assert_eq!(winners, 1, "round {round}");
        }
    }
}
