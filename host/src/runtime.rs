//! [`Omni`]: the host an embedder or the CLI opens on a data dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use omni_capabilities::{lookup, Manifest, ManifestError, Severity};
use redb::Database;
use serde::Serialize;

use crate::audit::{AuditLog, EventKind, NewRecord};
use crate::caps::browser::{HtmlScraper, ScrapeBackend};
use crate::caps::egress::{CheckedResolver, Egress, Resolver, SystemResolver};
use crate::caps::fs::{CapStdFs, FsBackend};
use crate::caps::http::{HttpBackend, ReqwestBackend};
use crate::caps::inference::{InferenceBackend, OpenAiCompatible, UsageLedger};
use crate::caps::kv::{KvBackend, RedbKv};
use crate::caps::messaging::{BusBackend, ChannelBus, Delivery, MessagingBackend, WebhookBackend};
use crate::caps::notifications::{Notification, NotificationBackend, NotificationLog};
use crate::caps::process::{ProcessBackend, SystemProcess};
use crate::caps::scheduling::{RedbSchedules, ScheduleStore};
use crate::caps::search::{SearchProvider, SearchProviders};
use crate::caps::websocket::{TungsteniteBackend, WebSocketBackend};
use crate::config::{ConfigError, OmniConfig};
use crate::engine::{EngineError, OmniEngine};
use crate::policy::{Decision, DenyPrompter, GrantDuration, PolicyEngine, Prompter};
use crate::registry::{InstalledExtension, Registry, RegistryError};
use crate::sandbox::{
    check_imports, CallError, CallOutput, ExtensionIdentity, ImportError, ImportReport, Linkage, Sandbox,
};
use crate::HostShared;

/// Why an Omni operation failed. Every message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum OmniError {
    /// `omni.toml` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The manifest failed validation.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component's imports do not match its manifest.
    #[error("{}", imports_message(.0))]
    Imports(Vec<ImportError>),
    /// The engine or the compiler failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The permission engine or audit log failed.
    #[error("{0}")]
    Policy(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The install source is not a folder with a manifest or a manifest file.
    #[error("{0}")]
    Source(String),
    /// No extension with this id is installed.
    #[error("no extension `{0}` is installed; `omni list` shows what is")]
    NotInstalled(String),
    /// The manifest declares no such tool.
    #[error("{extension} has no tool `{tool}`; its tools are: {available}")]
    UnknownTool {
        /// The extension.
        extension: String,
        /// The tool asked for.
        tool: String,
        /// The tools it has.
        available: String,
    },
    /// The arguments are not JSON or do not match the tool's parameters.
    #[error("invalid arguments for {tool}: {problems}\nthe tool's parameters are: {schema}")]
    Arguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        problems: String,
        /// The JSON Schema they must match.
        schema: String,
    },
    /// A required permission was refused at install.
    #[error("{extension} cannot be installed without {}: the manifest marks {} required; grant {} or do not install it", .capabilities.join(", "), if .capabilities.len() == 1 { "it" } else { "them" }, if .capabilities.len() == 1 { "it" } else { "them" })]
    RequiredDenied {
        /// The extension.
        extension: String,
        /// The required capabilities that were refused.
        capabilities: Vec<String>,
    },
    /// The call itself failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The Guardian judged something the tool returned (its result, its error message,
    /// its stdout or stderr) to be an attack; the call's output was withheld.
    #[error("the Guardian blocked the {part} of {extension}/{tool}: score {score}/100 ({kind}){}\nthe call's output was withheld; `omni audit --extension {extension}` shows the record", rules_note(.rules))]
    Blocked {
        /// The extension.
        extension: String,
        /// The tool.
        tool: String,
        /// What was blocked: `result`, `error message`, `stdout`, `stderr`.
        part: &'static str,
        /// The Guardian's score (0 = attack, 100 = clean).
        score: u8,
        /// The verdict band.
        kind: String,
        /// The signatures that matched, as `id: description`.
        rules: Vec<String>,
    },
    /// The Guardian could not start (for example a bad signature file).
    #[error("the Guardian could not start: {0}\nfix the [guardian] table of omni.toml")]
    Guardian(String),
}

fn rules_note(rules: &[String]) -> String {
    if rules.is_empty() {
        String::new()
    } else {
        format!("; matched {}", rules.join(", "))
    }
}

/// Whether an update lets more programs run at once than the installed version could on
/// this host. [`PolicyEngine::needs_review`] compares an unset process `max_concurrent`
/// with the built-in default; this host's `[process] max_concurrent` may be lower, and
/// then a newly set value between the two is still wider than what was approved.
fn raises_process_slots(old: &Manifest, new: &Manifest, host_default: u32) -> bool {
    let slots = |m: &Manifest| match m.permission("process.spawn").map(|p| &p.scope) {
        Some(omni_capabilities::Scope::Process(s)) => Some(s.max_concurrent.unwrap_or(host_default)),
        _ => None,
    };
    matches!((slots(old), slots(new)), (Some(before), Some(after)) if after > before)
}

fn imports_message(problems: &[ImportError]) -> String {
    let mut out = String::from("the component's imports do not match its manifest:");
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string().replace('\n', "\n    "));
    }
    out
}

fn policy_err<E: std::fmt::Display>(e: E) -> OmniError {
    OmniError::Policy(e.to_string())
}

/// Everything needed to show a person the permission review and then install.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The component bytes.
    pub component: Vec<u8>,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// What the component imports.
    pub imports: ImportReport,
    /// The version installed now, if this is an update.
    pub previous: Option<InstalledExtension>,
    /// Whether this update adds capabilities or widens a scope (a fresh install always
    /// needs review).
    pub needs_review: bool,
}

/// One row of the permission review table.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewRow {
    /// Capability key.
    pub capability: String,
    /// Its severity.
    pub severity: Severity,
    /// The scope, as one line.
    pub scope: String,
    /// Why the extension wants it.
    pub reason: String,
    /// Whether the extension refuses to install without it.
    pub required: bool,
    /// Whether the component really imports it (a declared but unused capability is
    /// harmless to grant, but worth noticing).
    pub imported: bool,
}

impl InstallPlan {
    /// The review table rows, in manifest order.
    pub fn review(&self) -> Vec<ReviewRow> {
        self.manifest
            .permissions
            .iter()
            .map(|p| ReviewRow {
                capability: p.capability.clone(),
                severity: lookup(&p.capability).map(|i| i.severity).unwrap_or(Severity::Critical),
                scope: p.scope.to_string(),
                reason: p.reason.clone(),
                required: p.required,
                imported: self.imports.capabilities.contains(&p.capability.as_str()),
            })
            .collect()
    }
}

/// A person's answer for one capability at install.
#[derive(Debug, Clone)]
pub struct PermissionDecision {
    /// Capability key.
    pub capability: String,
    /// Allow or deny.
    pub decision: Decision,
    /// For how long.
    pub duration: GrantDuration,
}

/// Whether install checks the component's imports. Only tests of the link gate skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportCheck {
    /// Refuse a component whose imports the manifest does not cover (always, in the CLI).
    Enforce,
    /// Install anyway; the link-time gate must then refuse the component at call time.
    SkipForTesting,
}

/// Builder for [`Omni`].
pub struct OmniBuilder {
    data_dir: PathBuf,
    config: Option<OmniConfig>,
    config_path: Option<PathBuf>,
    engine: Option<OmniEngine>,
    prompter: Option<Arc<dyn Prompter>>,
    kv: Option<Arc<dyn KvBackend>>,
    http: Option<Arc<dyn HttpBackend>>,
    fs: Option<Arc<dyn FsBackend>>,
    process: Option<Arc<dyn ProcessBackend>>,
    inference: Option<Arc<dyn InferenceBackend>>,
    messaging: Option<Arc<dyn MessagingBackend>>,
    notifications: Option<Arc<dyn NotificationBackend>>,
    schedules: Option<Arc<dyn ScheduleStore>>,
    integrations: Option<crate::caps::Integrations>,
    resolver: Option<Arc<dyn Resolver>>,
    scrape: Option<Arc<dyn ScrapeBackend>>,
    websocket: Option<Arc<dyn WebSocketBackend>>,
    search: Vec<(String, Arc<dyn SearchProvider>)>,
    session: Option<String>,
}

impl OmniBuilder {
    /// Uses this configuration instead of reading `omni.toml`.
    pub fn config(mut self, config: OmniConfig) -> Self {
        self.config = Some(config);
        self
    }
    /// Reads the configuration from `path` instead of `<data dir>/omni.toml`.
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }
    /// Shares an engine (one per process is best: it owns the instance pool).
    pub fn engine(mut self, engine: OmniEngine) -> Self {
        self.engine = Some(engine);
        self
    }
    /// Who is asked when a call needs a decision (default: nobody, which denies).
    pub fn prompter(mut self, prompter: Arc<dyn Prompter>) -> Self {
        self.prompter = Some(prompter);
        self
    }
    /// Replaces the key-value backend.
    pub fn kv_backend(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.kv = Some(kv);
        self
    }
    /// Replaces the HTTP transport.
    pub fn http_backend(mut self, http: Arc<dyn HttpBackend>) -> Self {
        self.http = Some(http);
        self
    }
    /// Replaces the file system behind `filesystem.read` and `filesystem.write` (default:
    /// [`CapStdFs`], the host's files through cap-std directory handles).
    pub fn fs_backend(mut self, fs: Arc<dyn FsBackend>) -> Self {
        self.fs = Some(fs);
        self
    }
    /// Replaces how `process.spawn` starts programs (default: [`SystemProcess`]).
    pub fn process_backend(mut self, process: Arc<dyn ProcessBackend>) -> Self {
        self.process = Some(process);
        self
    }
    /// Replaces the `ai.inference` provider (default: the OpenAI-compatible client
    /// configured in `[inference]`).
    pub fn inference_backend(mut self, inference: Arc<dyn InferenceBackend>) -> Self {
        self.inference = Some(inference);
        self
    }
    /// Replaces where `channel.send` and `messaging.*` deliver (default: the channel bus,
    /// or the `[messaging] webhook_url`).
    pub fn messaging_backend(mut self, messaging: Arc<dyn MessagingBackend>) -> Self {
        self.messaging = Some(messaging);
        self
    }
    /// Replaces the `system.notifications` backend (default: an in-memory log).
    pub fn notification_backend(mut self, notifications: Arc<dyn NotificationBackend>) -> Self {
        self.notifications = Some(notifications);
        self
    }
    /// Replaces the `system.scheduling` job store (default: tables in the data dir's
    /// database).
    pub fn schedule_store(mut self, schedules: Arc<dyn ScheduleStore>) -> Self {
        self.schedules = Some(schedules);
        self
    }
    /// Replaces the backends of the integration capabilities (clipboard, devices,
    /// automation, version control, MCP, code intelligence, debugging, sub-agents,
    /// flowcharts). Default: [`Integrations::default`](crate::caps::Integrations), an
    /// in-memory clipboard, an empty flowchart registry and `unavailable` for the rest.
    pub fn integrations(mut self, integrations: crate::caps::Integrations) -> Self {
        self.integrations = Some(integrations);
        self
    }
    /// Replaces the resolver the egress policy asks for the addresses of host names
    /// (default: the system's). Every answer is still checked: only public addresses,
    /// or hosts mapped in `[network.resolve]`, are ever connected to.
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
    /// Replaces how `browser.scrape` turns a fetched document into text and links
    /// (default: [`HtmlScraper`]). Pages are still fetched by the host's egress policy.
    pub fn scrape_backend(mut self, scrape: Arc<dyn ScrapeBackend>) -> Self {
        self.scrape = Some(scrape);
        self
    }
    /// Replaces the WebSocket transport (default: [`TungsteniteBackend`]).
    pub fn websocket_backend(mut self, websocket: Arc<dyn WebSocketBackend>) -> Self {
        self.websocket = Some(websocket);
        self
    }
    /// Adds, or replaces, the `search.web` provider called `name` (the providers of
    /// `[search]` in `omni.toml` are built first).
    pub fn search_provider(mut self, name: impl Into<String>, provider: Arc<dyn SearchProvider>) -> Self {
        self.search.push((name.into(), provider));
        self
    }
    /// Names the session calls belong to (default: a fresh random id).
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Opens the data dir (creating it) and starts the host.
    pub fn open(self) -> Result<Omni, OmniError> {
        let data_dir = self.data_dir;
        std::fs::create_dir_all(&data_dir).map_err(|source| OmniError::Io { path: data_dir.clone(), source })?;
        let mut config = match self.config {
            Some(c) => c,
            None => OmniConfig::load(&self.config_path.unwrap_or_else(|| data_dir.join("omni.toml")))?,
        };
        // Omni's own data dir (grants, audit, components) is always a blocked path.
        config.security.data_dir = Some(data_dir.clone());
        let engine = match self.engine {
            Some(e) => e,
            None => OmniEngine::new(&config.limits)?,
        };
        let db_path = data_dir.join("omni.redb");
        let db = Arc::new(Database::create(&db_path).map_err(|e| {
            OmniError::Policy(format!("cannot open {}: {e}; is another omni process using it?", db_path.display()))
        })?);
        let registry = Registry::open(db.clone(), data_dir.join("extensions"))?;
        let audit = AuditLog::open(db.clone()).map_err(policy_err)?;
        let prompter = self.prompter.unwrap_or_else(|| Arc::new(DenyPrompter));
        let policy =
            PolicyEngine::open(db.clone(), audit.clone(), config.security.clone(), prompter).map_err(policy_err)?;
        let kv: Arc<dyn KvBackend> = match self.kv {
            Some(kv) => kv,
            None => Arc::new(RedbKv::new(db.clone()).map_err(policy_err)?),
        };
        let resolver = self.resolver.unwrap_or_else(|| Arc::new(SystemResolver));
        let egress = Arc::new(Egress::new(config.network.clone(), resolver));
        let http: Arc<dyn HttpBackend> = match self.http {
            Some(h) => h,
            None => Arc::new(ReqwestBackend::new(CheckedResolver::new(egress.clone())).map_err(policy_err)?),
        };
        let fs: Arc<dyn FsBackend> = self.fs.unwrap_or_else(|| Arc::new(CapStdFs));
        let process: Arc<dyn ProcessBackend> = self.process.unwrap_or_else(|| Arc::new(SystemProcess));
        let inference: Arc<dyn InferenceBackend> = match self.inference {
            Some(i) => i,
            None => Arc::new(OpenAiCompatible::new(&config.inference).map_err(policy_err)?),
        };
        let inference_usage = Arc::new(UsageLedger::new(db.clone()).map_err(policy_err)?);
        let channel_bus = ChannelBus::new(config.messaging.bus_slots());
        let messaging: Arc<dyn MessagingBackend> = match (self.messaging, &config.messaging.webhook_url) {
            (Some(m), _) => m,
            (None, Some(_)) => Arc::new(WebhookBackend::new(&config.messaging).map_err(policy_err)?),
            (None, None) => Arc::new(BusBackend::new(channel_bus.clone())),
        };
        let notifications = self.notifications.unwrap_or_else(|| Arc::new(NotificationLog::default()));
        let schedules: Arc<dyn ScheduleStore> = match self.schedules {
            Some(s) => s,
            None => Arc::new(RedbSchedules::new(db.clone()).map_err(policy_err)?),
        };
        let scrape = self.scrape.unwrap_or_else(|| Arc::new(HtmlScraper));
        let websocket: Arc<dyn WebSocketBackend> = match self.websocket {
            Some(w) => w,
            None => Arc::new(TungsteniteBackend::new(CheckedResolver::new(egress.clone()))),
        };
        let mut search = SearchProviders::from_config(&config.search).map_err(policy_err)?;
        for (name, provider) in self.search {
            search.insert(name, provider);
        }
        let search = Arc::new(search);
        let session = self.session.unwrap_or_else(new_session_id);
        let guardian = Arc::new(
            omni_guardian::Guardian::new(config.guardian.clone()).map_err(|e| OmniError::Guardian(e.to_string()))?,
        );
        Ok(Omni {
            shared: Arc::new(HostShared {
                config,
                policy,
                kv,
                http,
                fs,
                process,
                running: Default::default(),
                inference,
                inference_usage,
                messaging,
                channel_bus,
                notifications,
                schedules,
                integrations: self.integrations.unwrap_or_default(),
                egress,
                scrape,
                websocket,
                search,
                guardian,
            }),
            engine,
            audit,
            registry,
            data_dir,
            session: session.into(),
            sandboxes: Mutex::new(HashMap::new()),
        })
    }
}

fn new_session_id() -> String {
    use sha2::{Digest, Sha256};
    let seed = format!("{:?}-{}-{:?}", std::time::SystemTime::now(), std::process::id(), std::thread::current().id());
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

/// The Omni host on one data dir.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), omni_host::OmniError> {
/// let omni = omni_host::Omni::builder("/tmp/omni-data").open()?;
/// let plan = omni.prepare_install("target/omni-extensions/dev.omni.calculator".as_ref())?;
/// omni.install(&plan, &[])?;
/// let out = omni.call("dev.omni.calculator", "evaluate", r#"{"expression":"2*(3+4)"}"#).await?;
/// assert_eq!(out.output, "14");
/// # Ok(()) }
/// ```
pub struct Omni {
    shared: Arc<HostShared>,
    engine: OmniEngine,
    audit: AuditLog,
    registry: Registry,
    data_dir: PathBuf,
    session: Arc<str>,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
}

impl Omni {
    /// A builder on `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> OmniBuilder {
        OmniBuilder {
            data_dir: data_dir.into(),
            config: None,
            config_path: None,
            engine: None,
            prompter: None,
            kv: None,
            http: None,
            fs: None,
            process: None,
            inference: None,
            messaging: None,
            notifications: None,
            schedules: None,
            integrations: None,
            resolver: None,
            scrape: None,
            websocket: None,
            search: Vec::new(),
            session: None,
        }
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// The configuration in force.
    pub fn config(&self) -> &OmniConfig {
        &self.shared.config
    }
    /// The permission engine.
    pub fn policy(&self) -> &PolicyEngine {
        &self.shared.policy
    }
    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }
    /// The shared engine.
    pub fn engine(&self) -> &OmniEngine {
        &self.engine
    }
    /// This host's default session id.
    pub fn session(&self) -> &str {
        &self.session
    }
    /// A subscriber to the channel bus: every `channel.send` and `messaging.*` message
    /// sent from now on through the default messaging backend (none while a webhook or
    /// an embedder's backend delivers them).
    pub fn subscribe_channel(&self) -> tokio::sync::broadcast::Receiver<Delivery> {
        self.shared.channel_bus.subscribe()
    }
    /// The notifications the notification backend keeps, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.shared.notifications.recent()
    }
    pub(crate) fn schedules(&self) -> &Arc<dyn ScheduleStore> {
        &self.shared.schedules
    }

    /// Reads, validates and compiles an extension from a folder holding `manifest.toml`
    /// and its component, or from a manifest file, and checks the component's imports.
    pub fn prepare_install(&self, source: &Path) -> Result<InstallPlan, OmniError> {
        self.prepare_install_with(source, ImportCheck::Enforce)
    }

    /// [`Omni::prepare_install`] with the import check made explicit.
    pub fn prepare_install_with(&self, source: &Path, check: ImportCheck) -> Result<InstallPlan, OmniError> {
        let manifest_path = if source.is_dir() { source.join("manifest.toml") } else { source.to_path_buf() };
        if !manifest_path.is_file() {
            return Err(OmniError::Source(format!(
                "{} has no manifest.toml; pass the folder `cargo xtask build-extension` printed, or the manifest file itself",
                source.display()
            )));
        }
        let manifest = Manifest::from_path(&manifest_path)?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let component_path = dir.join(&manifest.runtime.entrypoint);
        let component =
            std::fs::read(&component_path).map_err(|source| OmniError::Io { path: component_path.clone(), source })?;
        let digest = crate::digest(&component);
        let compiled =
            self.engine.compile(&component, &component_path.display().to_string(), Some(&self.cache_dir()))?;
        let imports = match check_imports(&compiled, &manifest) {
            Ok(report) => report,
            Err(problems) if check == ImportCheck::Enforce => return Err(OmniError::Imports(problems)),
            Err(_) => ImportReport::default(),
        };
        let previous = self.registry.get(&manifest.extension.id)?;
        let needs_review = match &previous {
            None => true,
            Some(old) => {
                let old = old.manifest()?;
                PolicyEngine::needs_review(&old, &manifest)
                    || raises_process_slots(&old, &manifest, self.shared.config.process.max_concurrent)
            }
        };
        Ok(InstallPlan { manifest, component, digest, imports, previous, needs_review })
    }

    /// Installs a prepared extension with a person's decisions.
    ///
    /// Capabilities without a decision get no grant: the host's `default_policy` decides
    /// them at call time (refused under `"deny"`, the default; asked through the
    /// [`Prompter`](crate::policy::Prompter) under `"prompt"`). Pass
    /// [`Decision::Deny`](crate::policy::Decision::Deny) to refuse one for good. A required
    /// capability that is not allowed refuses the install. On an update that needs no
    /// review, existing grants carry over for capabilities without a new decision.
    pub fn install(
        &self,
        plan: &InstallPlan,
        decisions: &[PermissionDecision],
    ) -> Result<InstalledExtension, OmniError> {
        let id = plan.manifest.extension.id.clone();
        let decision_for = |cap: &str| decisions.iter().find(|d| d.capability == cap);
        if let Some(unknown) = decisions.iter().find(|d| plan.manifest.permission(&d.capability).is_none()) {
            return Err(OmniError::Source(format!(
                "{} does not declare {}; only declared capabilities can be granted",
                id, unknown.capability
            )));
        }
        let keep_existing = plan.previous.is_some() && !plan.needs_review;
        let refused: Vec<String> = plan
            .manifest
            .permissions
            .iter()
            .filter(|p| p.required)
            .filter(|p| match decision_for(&p.capability) {
                Some(d) => d.decision != Decision::Allow,
                None => !(keep_existing && self.shared.policy.linkable(&id, &p.capability)),
            })
            .map(|p| p.capability.clone())
            .collect();
        if !refused.is_empty() {
            return Err(OmniError::RequiredDenied { extension: id, capabilities: refused });
        }
        let record = InstalledExtension {
            id: id.clone(),
            version: plan.manifest.extension.version.to_string(),
            name: plan.manifest.extension.name.clone(),
            digest: plan.digest.clone(),
            manifest_toml: plan.manifest.to_toml_string(),
            installed_at: crate::now_rfc3339(),
            imports: plan.imports.capabilities.iter().map(|s| s.to_string()).collect(),
        };
        if plan.previous.is_some() && !keep_existing {
            self.shared.policy.revoke(&id, None).map_err(policy_err)?;
        }
        self.registry.put(&record, &plan.component)?;
        for permission in &plan.manifest.permissions {
            // A capability nobody decided stays undecided: no grant is stored, so the
            // host's `default_policy` applies to it (refused under "deny", asked under
            // "prompt"). Storing a refusal here would silence "prompt" for good.
            let Some(d) = decision_for(&permission.capability) else { continue };
            let (decision, duration) = (d.decision, d.duration);
            self.shared.policy.record_decision(&id, permission, decision, duration).map_err(policy_err)?;
        }
        self.audit
            .append(NewRecord {
                session: self.session.to_string(),
                target: Some(format!("{} {} sha256:{}", id, record.version, record.digest)),
                ..NewRecord::event(
                    EventKind::Install,
                    &id,
                    if plan.previous.is_some() { "updated" } else { "installed" },
                )
            })
            .map_err(policy_err)?;
        self.forget_sandbox(&id);
        Ok(record)
    }

    /// Removes an extension, its grants, its storage and its files.
    pub fn uninstall(&self, id: &str) -> Result<bool, OmniError> {
        if self.registry.get(id)?.is_none() {
            return Ok(false);
        }
        self.shared.policy.forget_extension(id).map_err(policy_err)?;
        self.shared.kv.clear(id).map_err(policy_err)?;
        self.shared.schedules.clear(id).map_err(policy_err)?;
        let removed = self.registry.remove(id)?;
        self.audit
            .append(NewRecord {
                session: self.session.to_string(),
                ..NewRecord::event(EventKind::Uninstall, id, "uninstalled")
            })
            .map_err(policy_err)?;
        self.forget_sandbox(id);
        Ok(removed)
    }

    /// Every installed extension.
    pub fn list(&self) -> Result<Vec<InstalledExtension>, OmniError> {
        Ok(self.registry.list()?)
    }

    /// The installed record of `id`.
    pub fn installed(&self, id: &str) -> Result<InstalledExtension, OmniError> {
        self.registry.get(id)?.ok_or_else(|| OmniError::NotInstalled(id.to_string()))
    }

    /// Calls `tool` of extension `id` with JSON `arguments`, in this host's session.
    pub async fn call(&self, id: &str, tool: &str, arguments: &str) -> Result<CallOutput, OmniError> {
        let session = self.session.clone();
        self.call_in_session(session, id, tool, arguments).await
    }

    /// Calls a tool in the named session (Session grants and audit records use it).
    pub async fn call_in_session(
        &self,
        session: impl Into<Arc<str>>,
        id: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<CallOutput, OmniError> {
        let sandbox = self.sandbox(id)?;
        let manifest = &sandbox.identity.manifest;
        let Some(spec) = manifest.tool(tool) else {
            let available: Vec<&str> = manifest.tools.iter().map(|t| t.name.as_str()).collect();
            return Err(OmniError::UnknownTool {
                extension: id.to_string(),
                tool: tool.to_string(),
                available: if available.is_empty() { "(none)".into() } else { available.join(", ") },
            });
        };
        let schema = || serde_json::to_string(&spec.parameters).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(arguments).map_err(|e| OmniError::Arguments {
            tool: tool.to_string(),
            problems: format!("not JSON: {e}"),
            schema: schema(),
        })?;
        if let Err(problems) = sandbox.validate_arguments(tool, value).await {
            return Err(OmniError::Arguments {
                tool: tool.to_string(),
                problems: problems.join("; "),
                schema: schema(),
            });
        }
        let pre = sandbox.template(&self.linkage(&sandbox))?;
        let session: Arc<str> = session.into();
        match sandbox.call(&self.shared, pre, session.clone(), tool, arguments).await {
            Ok(mut out) => {
                self.screen_output(&session, id, tool, &mut out).await?;
                Ok(out)
            }
            Err(e) => Err(self.screen_error(&session, id, tool, e).await?),
        }
    }

    /// Scans everything a finished call hands its caller (the result, and the captured
    /// stdout and stderr) with the Guardian before anyone (a model) sees it. Anything
    /// judged malicious withholds the whole output; every verdict that is not clean is
    /// audited. [`CallOutput::verdict`] is the worst verdict of the parts.
    async fn screen_output(&self, session: &str, id: &str, tool: &str, out: &mut CallOutput) -> Result<(), OmniError> {
        let mut worst = self.screen(session, id, tool, "result", &out.output).await?;
        for (part, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if text.is_empty() {
                continue;
            }
            let verdict = self.screen(session, id, tool, part, text).await?;
            if verdict.score < worst.score {
                worst = verdict;
            }
        }
        out.verdict = Some(worst);
        Ok(())
    }

    /// Scans what a failed call would show its caller: the tool's error message, an
    /// invalid-arguments message, a crash report with the guest's stderr. A message
    /// judged malicious is replaced by [`OmniError::Blocked`]; a suspicious one is
    /// returned with the audit record that says so.
    async fn screen_error(&self, session: &str, id: &str, tool: &str, e: CallError) -> Result<OmniError, OmniError> {
        let (part, text) = match &e {
            CallError::Tool { message, .. } => ("error message", message.as_str()),
            CallError::InvalidArguments(m) | CallError::UnknownTool(m) => ("error message", m.as_str()),
            CallError::Trap { stderr, .. } => ("stderr", stderr.as_str()),
            // Host-written messages with nothing the guest chose.
            CallError::Limit(_) | CallError::Link(_) | CallError::OutputTooLarge { .. } => return Ok(e.into()),
        };
        if !text.is_empty() {
            self.screen(session, id, tool, part, text).await?;
        }
        Ok(e.into())
    }

    /// Scans one part of a call's output at the `tool-result` point, as a reader will see
    /// it: a JSON text is judged by its decoded keys and strings
    /// ([`omni_guardian::Guardian::scan_json`]), since `\u0049gnore` is "Ignore" to
    /// every JSON reader. Audits a verdict that is not clean; a malicious one is an error.
    async fn screen(
        &self,
        session: &str,
        id: &str,
        tool: &str,
        part: &'static str,
        text: &str,
    ) -> Result<omni_guardian::Verdict, OmniError> {
        let guardian = &self.shared.guardian;
        let point = omni_guardian::ScanPoint::ToolResult;
        let verdict = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => guardian.scan_json(&value, point),
            Err(_) => guardian.scan(text, point),
        };
        if verdict.kind == omni_guardian::VerdictKind::Clean {
            return Ok(verdict);
        }
        let rules: Vec<String> = verdict.matches.iter().map(|m| format!("{}: {}", m.id, m.description)).collect();
        self.audit
            .append_async(NewRecord {
                session: session.to_string(),
                target: Some(format!("{part} of {tool}")),
                ..NewRecord::event(
                    EventKind::GuardianVerdict,
                    id,
                    format!("{} (score {}/100){}", verdict.kind, verdict.score, rules_note(&rules)),
                )
            })
            .await
            .map_err(policy_err)?;
        if verdict.is_blocked() {
            return Err(OmniError::Blocked {
                extension: id.to_string(),
                tool: tool.to_string(),
                part,
                score: verdict.score,
                kind: verdict.kind.to_string(),
                rules,
            });
        }
        Ok(verdict)
    }

    /// Instantiates extension `id` once without calling it: checks that it links with
    /// the current grants and starts within its limits.
    pub async fn instantiate(&self, id: &str) -> Result<(), OmniError> {
        let sandbox = self.sandbox(id)?;
        let pre = sandbox.template(&self.linkage(&sandbox))?;
        Ok(sandbox.instantiate(&self.shared, pre, self.session.clone()).await?)
    }

    /// How each capability the component imports is linked right now.
    fn linkage(&self, sandbox: &Sandbox) -> Vec<(&'static omni_capabilities::CapabilityInfo, Linkage)> {
        let id = &sandbox.identity.id;
        sandbox
            .capability_imports()
            .iter()
            .map(|info| {
                let how = if self.shared.policy.linkable(id, info.key) { Linkage::Granted } else { Linkage::Refused };
                (*info, how)
            })
            .collect()
    }

    fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    fn sandbox(&self, id: &str) -> Result<Arc<Sandbox>, OmniError> {
        if let Some(s) = self.sandboxes_lock().get(id) {
            return Ok(s.clone());
        }
        let record = self.installed(id)?;
        let manifest = record.manifest()?;
        let bytes = self.registry.component(&record)?;
        let component = self.engine.compile(&bytes, &format!("{id} (installed)"), Some(&self.cache_dir()))?;
        let sandbox =
            Arc::new(Sandbox::new(self.engine.clone(), component, ExtensionIdentity { id: id.to_string(), manifest }));
        Ok(self.sandboxes_lock().entry(id.to_string()).or_insert(sandbox).clone())
    }

    fn forget_sandbox(&self, id: &str) {
        self.sandboxes_lock().remove(id);
    }

    fn sandboxes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Sandbox>>> {
        match self.sandboxes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
