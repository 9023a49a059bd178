//! `storage.persistent`: a key-value store private to each extension, in redb.
//!
//! Keys live in one table keyed by `(extension id, key)`, so one extension's namespace
//! is a key range no other extension's calls can name. Usage (key bytes plus value
//! bytes) is kept per extension in the same write transaction as the change it counts,
//! so the quota can never drift from the data, even across a crash.
//!
//! The quota is the granted scope's `max_bytes` (what a person approved), read at each
//! call; a write past it is refused as `out-of-scope` and written to the audit log as a
//! deny, like any other refusal.

use std::sync::Arc;

use omni_capabilities::Scope;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::try_budget;
use crate::bindings::omni::caps::kv::Host;
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "storage.persistent";
const DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv_data");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv_usage");

/// The quota when a grant's scope names no `max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most keys one `list-keys` call returns.
pub const MAX_LIST: u32 = 10_000;

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The write would take the namespace past its quota.
    #[error("storing {wanted} bytes would bring this extension's storage to {would_be} bytes, past its quota of {quota} bytes (max_bytes in the storage.persistent scope); delete keys or ask for a larger quota")]
    Quota {
        /// Bytes of the new entry.
        wanted: u64,
        /// Usage after the write.
        would_be: u64,
        /// The quota.
        quota: u64,
    },
    /// The database failed.
    #[error("key-value storage failed: {0}")]
    Storage(String),
}

/// The storage backend an embedder may replace (e.g. with a remote store).
///
/// `namespace` is the extension id; implementations must keep namespaces disjoint.
pub trait KvBackend: Send + Sync {
    /// The value under `key`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value` under `key` if the namespace stays within `quota` bytes.
    fn set(&self, namespace: &str, key: &str, value: &[u8], quota: u64) -> Result<(), KvError>;
    /// Removes `key`; whether it existed.
    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError>;
    /// Keys starting with `prefix`, in order, at most `limit`.
    fn list(&self, namespace: &str, prefix: &str, limit: u32) -> Result<Vec<String>, KvError>;
    /// Bytes used by the namespace.
    fn usage(&self, namespace: &str) -> Result<u64, KvError>;
    /// Removes the whole namespace (on uninstall).
    fn clear(&self, namespace: &str) -> Result<(), KvError>;
}

/// The default backend: tables in Omni's redb database.
pub struct RedbKv {
    db: Arc<Database>,
}

fn storage<E: std::fmt::Display>(e: E) -> KvError {
    KvError::Storage(e.to_string())
}

impl RedbKv {
    /// Uses (and creates if needed) the key-value tables of `db`.
    pub fn new(db: Arc<Database>) -> Result<RedbKv, KvError> {
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(DATA).map_err(storage)?;
        tx.open_table(USAGE).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(RedbKv { db })
    }
}

impl KvBackend for RedbKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(DATA).map_err(storage)?;
        Ok(table.get((namespace, key)).map_err(storage)?.map(|v| v.value().to_vec()))
    }

    fn set(&self, namespace: &str, key: &str, value: &[u8], quota: u64) -> Result<(), KvError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut data = tx.open_table(DATA).map_err(storage)?;
            let mut usage = tx.open_table(USAGE).map_err(storage)?;
            let used = usage.get(namespace).map_err(storage)?.map(|v| v.value()).unwrap_or(0);
            let old =
                data.get((namespace, key)).map_err(storage)?.map(|v| (key.len() + v.value().len()) as u64).unwrap_or(0);
            let wanted = (key.len() + value.len()) as u64;
            let would_be = used.saturating_sub(old).saturating_add(wanted);
            if would_be > quota {
                return Err(KvError::Quota { wanted, would_be, quota });
            }
            data.insert((namespace, key), value).map_err(storage)?;
            usage.insert(namespace, would_be).map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut data = tx.open_table(DATA).map_err(storage)?;
            let mut usage = tx.open_table(USAGE).map_err(storage)?;
            let removed = data.remove((namespace, key)).map_err(storage)?.map(|v| (key.len() + v.value().len()) as u64);
            if let Some(freed) = removed {
                let used = usage.get(namespace).map_err(storage)?.map(|v| v.value()).unwrap_or(0);
                usage.insert(namespace, used.saturating_sub(freed)).map_err(storage)?;
            }
            removed.is_some()
        };
        tx.commit().map_err(storage)?;
        Ok(existed)
    }

    fn list(&self, namespace: &str, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(DATA).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in table.range((namespace, prefix)..).map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            let (ns, key) = k.value();
            if ns != namespace || !key.starts_with(prefix) || keys.len() >= limit as usize {
                break;
            }
            keys.push(key.to_string());
        }
        Ok(keys)
    }

    fn usage(&self, namespace: &str) -> Result<u64, KvError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let usage = tx.open_table(USAGE).map_err(storage)?;
        Ok(usage.get(namespace).map_err(storage)?.map(|v| v.value()).unwrap_or(0))
    }

    fn clear(&self, namespace: &str) -> Result<(), KvError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut data = tx.open_table(DATA).map_err(storage)?;
            let keys: Vec<String> = {
                let mut keys = Vec::new();
                for entry in data.range((namespace, "")..).map_err(storage)? {
                    let (k, _) = entry.map_err(storage)?;
                    let (ns, key) = k.value();
                    if ns != namespace {
                        break;
                    }
                    keys.push(key.to_string());
                }
                keys
            };
            for key in &keys {
                data.remove((namespace, key.as_str())).map_err(storage)?;
            }
            tx.open_table(USAGE).map_err(storage)?.remove(namespace).map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }
}

/// A failed storage operation as the host function sees it: a quota refusal is audited
/// by the caller, anything else goes to the guest as it is.
enum KvRefusal {
    Quota(String),
    Other(CapError),
}

impl From<KvRefusal> for CapError {
    fn from(r: KvRefusal) -> CapError {
        match r {
            KvRefusal::Quota(m) => CapError::OutOfScope(m),
            KvRefusal::Other(e) => e,
        }
    }
}

fn to_refusal(e: KvError) -> KvRefusal {
    match e {
        KvError::Quota { .. } => KvRefusal::Quota(e.to_string()),
        KvError::Storage(m) => KvRefusal::Other(CapError::Io(m)),
    }
}

fn check_key(key: &str) -> Result<(), CapError> {
    if key.is_empty() {
        return Err(CapError::InvalidInput("the key is empty; use a non-empty key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CapError::InvalidInput(format!(
            "the key is {} bytes long, more than the {MAX_KEY_BYTES} bytes allowed; use a shorter key (hash long names)",
            key.len()
        )));
    }
    Ok(())
}

/// The namespace quota from a granted scope.
fn quota(scope: &Scope) -> u64 {
    match scope {
        Scope::Storage(s) => s.max_bytes,
        _ => DEFAULT_MAX_BYTES,
    }
}

/// Every storage call is in scope once granted; the quota is checked by the backend.
fn any_key(_: &Scope) -> Result<(), String> {
    Ok(())
}

impl CallState {
    /// Runs a blocking storage operation off the async executor.
    ///
    /// Not an `async fn` on purpose: it takes what it needs from `self` up front, so
    /// the future it returns holds no reference to the (non-`Sync`) call state.
    fn kv_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn KvBackend, &str) -> Result<T, KvError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, KvRefusal>> + Send + 'static {
        let backend = self.host.kv.clone();
        let ns = self.ext.id.clone();
        async move {
            match tokio::task::spawn_blocking(move || op(backend.as_ref(), &ns)).await {
                Ok(r) => r.map_err(to_refusal),
                Err(e) => Err(KvRefusal::Other(CapError::Io(format!("storage task failed: {e}")))),
            }
        }
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, CapError>> {
        try_budget!(self, key.len());
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize(CAPABILITY, &format!("get {key}"), &any_key).await {
            return Ok(Err(e));
        }
        Ok(self.kv_blocking(move |b, ns| b.get(ns, &key)).await.map_err(CapError::from))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, key.len() + value.len());
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let target = format!("set {key}");
        // The quota is the granted scope's, not the manifest's: they differ when a grant
        // was narrowed after install, and the grant is what a person approved.
        let scope = match self.authorize_scoped(CAPABILITY, &target, any_key).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let quota = scope.as_ref().map_or(DEFAULT_MAX_BYTES, quota);
        match self.kv_blocking(move |b, ns| b.set(ns, &key, &value, quota)).await {
            Err(KvRefusal::Quota(why)) => Ok(Err(self.refuse(CAPABILITY, &target, why).await)),
            Err(KvRefusal::Other(e)) => Ok(Err(e)),
            Ok(()) => Ok(Ok(())),
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, CapError>> {
        try_budget!(self, key.len());
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize(CAPABILITY, &format!("delete {key}"), &any_key).await {
            return Ok(Err(e));
        }
        Ok(self.kv_blocking(move |b, ns| b.delete(ns, &key)).await.map_err(CapError::from))
    }

    async fn list_keys(&mut self, prefix: String, limit: u32) -> wasmtime::Result<Result<Vec<String>, CapError>> {
        try_budget!(self, prefix.len());
        if let Err(e) = self.authorize(CAPABILITY, &format!("list {prefix}*"), &any_key).await {
            return Ok(Err(e));
        }
        let limit = limit.min(MAX_LIST);
        Ok(self.kv_blocking(move |b, ns| b.list(ns, &prefix, limit)).await.map_err(CapError::from))
    }

    async fn exists(&mut self, key: String) -> wasmtime::Result<Result<bool, CapError>> {
        try_budget!(self, key.len());
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize(CAPABILITY, &format!("exists {key}"), &any_key).await {
            return Ok(Err(e));
        }
        Ok(self.kv_blocking(move |b, ns| b.get(ns, &key).map(|v| v.is_some())).await.map_err(CapError::from))
    }

    async fn usage(&mut self) -> wasmtime::Result<Result<(u64, u64), CapError>> {
        let scope = match self.authorize_scoped(CAPABILITY, "usage", any_key).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let quota = scope.as_ref().map_or(DEFAULT_MAX_BYTES, quota);
        Ok(self.kv_blocking(move |b, ns| b.usage(ns).map(|u| (u, quota))).await.map_err(CapError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, RedbKv) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Database::create(dir.path().join("t.redb")).expect("db"));
        (dir, RedbKv::new(db).expect("kv"))
    }

    #[test]
    fn namespaces_are_disjoint() {
        let (_d, kv) = backend();
        kv.set("a.one", "k", b"secret", 1000).unwrap();
        kv.set("a.two", "k", b"other", 1000).unwrap();
        assert_eq!(kv.get("a.one", "k").unwrap().as_deref(), Some(&b"secret"[..]));
        assert_eq!(kv.get("a.two", "k").unwrap().as_deref(), Some(&b"other"[..]));
        assert_eq!(kv.list("a.two", "", 10).unwrap(), vec!["k".to_string()]);
        // A namespace that is a prefix of another sees none of its keys.
        kv.set("a.on", "x", b"1", 1000).unwrap();
        assert_eq!(kv.list("a.on", "", 10).unwrap(), vec!["x".to_string()]);
    }

    #[test]
    fn crafted_keys_never_reach_another_namespace() {
        let (_d, kv) = backend();
        kv.set("dev.a.other", "token", b"secret", 1000).unwrap();
        kv.set("dev.a", "b\0c", b"mine", 1000).unwrap();
        // Keys that a joined `namespace + separator + key` scheme would map onto the
        // other namespace's entry.
        for key in ["other\0token", ".other:token", ".other/token", "\0token", "other/token", "token"] {
            assert_eq!(kv.get("dev.a", key).unwrap(), None, "{key:?}");
            assert!(!kv.delete("dev.a", key).unwrap(), "{key:?}");
        }
        assert_eq!(kv.list("dev.a", "", 10).unwrap(), vec!["b\0c"]);
        assert_eq!(kv.get("dev.a.other", "token").unwrap().as_deref(), Some(&b"secret"[..]));
        assert_eq!(kv.list("dev.a.other", "", 10).unwrap(), vec!["token"]);
        // A namespace with a NUL in it is a different namespace, not a way in.
        assert!(kv.list("dev.a\0", "", 10).unwrap().is_empty());
        assert_eq!(kv.usage("dev.a").unwrap(), 3 + 4);
    }

    #[test]
    fn quota_counts_keys_and_values_and_frees_on_delete() {
        let (_d, kv) = backend();
        kv.set("e", "k1", &[0; 40], 100).unwrap();
        assert_eq!(kv.usage("e").unwrap(), 42);
        let err = kv.set("e", "k2", &[0; 60], 100).unwrap_err();
        assert!(matches!(err, KvError::Quota { would_be: 104, quota: 100, .. }), "{err}");
        // Overwriting replaces the old entry's bytes rather than adding to them.
        kv.set("e", "k1", &[0; 90], 100).unwrap();
        assert_eq!(kv.usage("e").unwrap(), 92);
        assert!(kv.delete("e", "k1").unwrap());
        assert!(!kv.delete("e", "k1").unwrap());
        assert_eq!(kv.usage("e").unwrap(), 0);
    }

    #[test]
    fn list_respects_prefix_and_limit_and_clear_empties() {
        let (_d, kv) = backend();
        for k in ["note:1", "note:2", "note:3", "meta"] {
            kv.set("e", k, b"v", 1000).unwrap();
        }
        assert_eq!(kv.list("e", "note:", 2).unwrap(), vec!["note:1", "note:2"]);
        assert_eq!(kv.list("e", "zzz", 10).unwrap(), Vec::<String>::new());
        kv.clear("e").unwrap();
        assert!(kv.list("e", "", 10).unwrap().is_empty());
        assert_eq!(kv.usage("e").unwrap(), 0);
    }
}
