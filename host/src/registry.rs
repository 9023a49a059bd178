//! Installed extensions: a redb table of records plus the component files they name.
//!
//! Each install copies the component into the data dir under its SHA-256, so what runs
//! later is exactly what the person reviewed, whatever happens to the source folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omni_capabilities::Manifest;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const EXTENSIONS: TableDefinition<&str, &str> = TableDefinition::new("extensions");

/// One installed extension as the registry records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledExtension {
    /// Extension id.
    pub id: String,
    /// Version from the manifest.
    pub version: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// The manifest text as reviewed.
    pub manifest_toml: String,
    /// When it was installed (RFC 3339, UTC).
    pub installed_at: String,
    /// Capability keys the component really imports.
    pub imports: Vec<String>,
}

impl InstalledExtension {
    /// The parsed manifest.
    pub fn manifest(&self) -> Result<Manifest, RegistryError> {
        Manifest::from_toml_str(&self.manifest_toml, &format!("installed manifest of {}", self.id))
            .map_err(|e| RegistryError::Corrupt(format!("{e}")))
    }
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database failed.
    #[error("registry storage failed: {0}")]
    Storage(String),
    /// A stored record or file no longer reads back.
    #[error("the registry is damaged: {0}; reinstall the extension")]
    Corrupt(String),
    /// A component file could not be written or read.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn storage<E: std::fmt::Display>(e: E) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

/// The registry of installed extensions.
#[derive(Clone)]
pub struct Registry {
    db: Arc<Database>,
    dir: PathBuf,
}

impl Registry {
    /// Opens the registry table in `db`, with component files under `dir`.
    pub fn open(db: Arc<Database>, dir: PathBuf) -> Result<Registry, RegistryError> {
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(EXTENSIONS).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(Registry { db, dir })
    }

    /// Where the component with `digest` of extension `id` is stored.
    pub fn component_path(&self, id: &str, digest: &str) -> PathBuf {
        self.dir.join(id).join(format!("{digest}.wasm"))
    }

    /// Stores the component bytes and the record, replacing an older version.
    pub fn put(&self, record: &InstalledExtension, component: &[u8]) -> Result<(), RegistryError> {
        let path = self.component_path(&record.id, &record.digest);
        write_atomic(&path, component)?;
        let json = serde_json::to_string(record).map_err(storage)?;
        let previous = self.get(&record.id)?;
        let tx = self.db.begin_write().map_err(storage)?;
        tx.open_table(EXTENSIONS).map_err(storage)?.insert(record.id.as_str(), json.as_str()).map_err(storage)?;
        tx.commit().map_err(storage)?;
        if let Some(old) = previous.filter(|old| old.digest != record.digest) {
            let _ = std::fs::remove_file(self.component_path(&old.id, &old.digest));
        }
        Ok(())
    }

    /// The record of `id`.
    pub fn get(&self, id: &str) -> Result<Option<InstalledExtension>, RegistryError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(EXTENSIONS).map_err(storage)?;
        let Some(v) = table.get(id).map_err(storage)? else { return Ok(None) };
        serde_json::from_str(v.value()).map(Some).map_err(|e| RegistryError::Corrupt(e.to_string()))
    }

    /// Every installed extension, by id.
    pub fn list(&self) -> Result<Vec<InstalledExtension>, RegistryError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(EXTENSIONS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.push(serde_json::from_str(v.value()).map_err(|e| RegistryError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Removes `id` and its files; whether it was installed.
    pub fn remove(&self, id: &str) -> Result<bool, RegistryError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let existed = tx.open_table(EXTENSIONS).map_err(storage)?.remove(id).map_err(storage)?.is_some();
        tx.commit().map_err(storage)?;
        let dir = self.dir.join(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RegistryError::Io { path: dir, source })?;
        }
        Ok(existed)
    }

    /// Reads the stored component of `record`, checking it still has its digest.
    pub fn component(&self, record: &InstalledExtension) -> Result<Vec<u8>, RegistryError> {
        let path = self.component_path(&record.id, &record.digest);
        let bytes = std::fs::read(&path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
        if crate::digest(&bytes) != record.digest {
            return Err(RegistryError::Corrupt(format!(
                "{} no longer matches the digest recorded at install",
                path.display()
            )));
        }
        Ok(bytes)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let io = |source| RegistryError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
