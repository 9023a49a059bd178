//! The one shared Wasmtime [`Engine`], its epoch ticker, and the on-disk compile cache.
//!
//! Every extension runs on one engine: the pooling allocator keeps instantiation in the
//! microseconds, and epoch interruption lets the host stop a guest that never calls out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::HostLimits;

/// Component instances the pool holds at once (every running call uses one).
const POOL_COMPONENT_INSTANCES: u32 = 256;

/// Why the engine could not be built or a component could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Wasmtime refused the configuration (e.g. the platform lacks virtual memory room).
    #[error("cannot start the WebAssembly engine: {0:#}")]
    Config(wasmtime::Error),
    /// The bytes are not a WebAssembly component.
    #[error("{origin} is not a valid WebAssembly component: {source:#}\nbuild it with `cargo xtask build-extension <DIR>` (a core module or a wasip1 binary is not enough)")]
    Compile {
        /// Which file.
        origin: String,
        /// Wasmtime's reason.
        source: wasmtime::Error,
    },
    /// The cache directory could not be written.
    #[error("cannot use the compile cache at {path}: {source}")]
    Cache {
        /// The cache path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The shared engine plus the thread that advances its epoch while calls run.
///
/// Cloning is cheap; the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct OmniEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    /// Components compiled by this engine, by cache key: a component is compiled at most
    /// once per process, whichever data dir asks for it.
    compiled: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    tick: Duration,
    /// Calls currently running; the ticker sleeps while this is zero.
    active: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl OmniEngine {
    /// Builds the engine with the pooling allocator sized by `limits`, and starts the
    /// epoch ticker.
    pub fn new(limits: &HostLimits) -> Result<OmniEngine, EngineError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES)
            .total_core_instances(POOL_COMPONENT_INSTANCES * 4)
            .total_memories(POOL_COMPONENT_INSTANCES * 2)
            .total_tables(POOL_COMPONENT_INSTANCES * 4)
            .total_stacks(POOL_COMPONENT_INSTANCES)
            .max_memory_size(limits.max_memory_mb as usize * 1024 * 1024)
            .max_unused_warm_slots(64);

        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(EngineError::Config)?;

        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(EngineInner {
            engine,
            compiled: Default::default(),
            tick: Duration::from_millis(limits.epoch_tick_ms.max(1)),
            active: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("omni-epoch".into())
            .spawn(move || ticker(weak, stop))
            .map_err(|e| EngineError::Config(wasmtime::Error::msg(e.to_string())))?;
        Ok(OmniEngine { inner })
    }

    /// The Wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The duration of one epoch tick.
    pub fn tick(&self) -> Duration {
        self.inner.tick
    }

    /// Marks a call as running until the guard drops, so the ticker keeps ticking.
    pub(crate) fn running(&self) -> RunningGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        RunningGuard { inner: self.inner.clone() }
    }

    /// Compiles `bytes`, using `cache_dir` to skip compilation of a component seen
    /// before (keyed by the SHA-256 of its bytes and the engine's settings).
    pub fn compile(&self, bytes: &[u8], origin: &str, cache_dir: Option<&Path>) -> Result<Component, EngineError> {
        let key = self.cache_key(bytes);
        if let Some(c) = self.compiled_lock().get(&key) {
            return Ok(c.clone());
        }
        let artifact = cache_dir.map(|dir| dir.join(format!("{key}.cwasm")));
        let component = match artifact.as_deref().and_then(|a| self.load_cached(a)) {
            Some(component) => component,
            None => {
                let component = Component::new(self.engine(), bytes)
                    .map_err(|source| EngineError::Compile { origin: origin.into(), source })?;
                if let (Some(dir), Some(artifact)) = (cache_dir, &artifact) {
                    // A cache that cannot be written only costs a recompilation next time.
                    let _ = self.store_cached(&component, dir, artifact);
                }
                component
            }
        };
        self.compiled_lock().insert(key, component.clone());
        Ok(component)
    }

    fn compiled_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Component>> {
        match self.inner.compiled.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine().precompile_compatibility_hash().hash(&mut h);
        let digest = Sha256::digest(bytes);
        format!("{}-{:016x}", hex::encode(digest), h.finish())
    }

    fn store_cached(&self, component: &Component, dir: &Path, artifact: &Path) -> Result<(), EngineError> {
        let cache_err = |source| EngineError::Cache { path: dir.to_path_buf(), source };
        let serialized = component.serialize().map_err(|e| cache_err(std::io::Error::other(e.to_string())))?;
        std::fs::create_dir_all(dir).map_err(cache_err)?;
        // Write the artifact and its digest to temporary names first and rename them in
        // place, so a crash never leaves a half-written artifact under the final name.
        let tmp = artifact.with_extension("cwasm.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(cache_err)?;
        f.write_all(&serialized).and_then(|_| f.sync_all()).map_err(cache_err)?;
        let sum = artifact.with_extension("sha256");
        std::fs::write(&sum, hex::encode(Sha256::digest(&serialized))).map_err(cache_err)?;
        std::fs::rename(&tmp, artifact).map_err(cache_err)?;
        Ok(())
    }

    /// Loads a cached artifact whose bytes still match the digest recorded beside it.
    #[allow(unsafe_code)]
    fn load_cached(&self, artifact: &Path) -> Option<Component> {
        let bytes = std::fs::read(artifact).ok()?;
        let recorded = std::fs::read_to_string(artifact.with_extension("sha256")).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != recorded.trim() {
            return None;
        }
        // SAFETY: `Component::deserialize` trusts its input to be an artifact produced by
        // this engine's `serialize`. The file lives in Omni's private data dir, is named by
        // the digest of its source component plus the engine's compatibility hash, and its
        // bytes were just checked against the SHA-256 written beside it when it was
        // produced, so a truncated or altered artifact is recompiled instead.
        unsafe { Component::deserialize(self.engine(), &bytes) }.ok()
    }
}

/// Keeps the epoch ticker running while a call is in flight.
pub(crate) struct RunningGuard {
    inner: Arc<EngineInner>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn ticker(engine: std::sync::Weak<EngineInner>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(inner) = engine.upgrade() else { return };
        let tick = inner.tick;
        if inner.active.load(Ordering::Acquire) > 0 {
            inner.engine.increment_epoch();
        }
        drop(inner);
        std::thread::sleep(tick);
    }
}
