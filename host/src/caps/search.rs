//! `search.web`: web search through providers the person configured.
//!
//! Providers are named in `[search]` of `omni.toml` (or added by an embedder with
//! `OmniBuilder::search_provider`). An extension picks one by name, and the grant's
//! `providers` list (when set) must contain it. The provider's endpoint is chosen by the
//! person, not by the extension, so it is not subject to the extension's network scope;
//! its API key is read from the environment variable the configuration names, at each
//! search, and never appears in a log, an audit record or an error message.
//!
//! ```toml
//! [search]
//! default = "brave"
//! max_results = 20
//!
//! [[search.providers]]
//! name = "brave"
//! kind = "brave"
//! endpoint = "https://api.search.brave.com/res/v1/web/search"
//! api_key_env = "BRAVE_SEARCH_API_KEY"
//!
//! [[search.providers]]
//! name = "searx"
//! kind = "searxng"
//! endpoint = "https://searx.example.org/search"
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use omni_capabilities::Scope;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{cap, try_budget};
use crate::bindings::omni::caps::web_search::{Host, Query, SearchResult};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "search.web";
/// Results returned when the query names no `max-results`.
pub const DEFAULT_RESULTS: u32 = 10;
/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 2_048;
/// Longest title, URL or snippet returned, in bytes.
const MAX_FIELD_BYTES: usize = 2_048;
/// Largest provider answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// `[search]` in `omni.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// The provider used when a query names none; the first provider when unset.
    pub default: Option<String>,
    /// Most results one search returns, whatever the extension asks for.
    pub max_results: u32,
    /// Longest one search may take, in milliseconds.
    pub timeout_ms: u64,
    /// The providers, `[[search.providers]]`.
    pub providers: Vec<ProviderConfig>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig { default: None, max_results: 20, timeout_ms: 15_000, providers: Vec::new() }
    }
}

/// One `[[search.providers]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name extensions and scopes use, e.g. `brave`.
    pub name: String,
    /// The API shape.
    pub kind: ProviderKind,
    /// The search endpoint URL.
    pub endpoint: String,
    /// The NAME of the environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// The API shapes the built-in HTTP provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Brave Search API: `GET endpoint?q=&count=&search_lang=`, key in
    /// `X-Subscription-Token`, hits in `web.results[].{title,url,description}`.
    Brave,
    /// SearXNG JSON API: `GET endpoint?q=&format=json&language=`, key (optional) as a
    /// bearer token, hits in `results[].{title,url,content}`.
    Searxng,
}

/// One search as the host hands it to a provider.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The search terms.
    pub text: String,
    /// At most this many results.
    pub max_results: u32,
    /// Preferred language (BCP 47), if any.
    pub language: Option<String>,
    /// Time allowed.
    pub timeout: Duration,
}

/// One hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// Page title.
    pub title: String,
    /// Page URL.
    pub url: String,
    /// Matching excerpt.
    pub snippet: String,
}

/// Why a search failed. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The provider cannot be used as configured (no key in the environment...).
    #[error("{0}")]
    Unavailable(String),
    /// The provider failed or answered something unreadable.
    #[error("{0}")]
    Failed(String),
}

/// Future returned by [`SearchProvider::search`].
pub type SearchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<SearchHit>, SearchError>> + Send + 'a>>;

/// A search engine; what an embedder adds or replaces with
/// `OmniBuilder::search_provider`. The host caps the number and size of the results.
pub trait SearchProvider: Send + Sync {
    /// Runs one search; best hits first.
    fn search(&self, request: SearchRequest) -> SearchFuture<'_>;
}

/// The built-in provider: one HTTP endpoint in the Brave or SearXNG shape.
pub struct HttpSearchProvider {
    name: String,
    kind: ProviderKind,
    endpoint: Url,
    api_key_env: Option<String>,
    client: reqwest::Client,
}

impl HttpSearchProvider {
    /// A provider for one configuration entry.
    pub fn new(config: &ProviderConfig) -> Result<HttpSearchProvider, SearchError> {
        let endpoint = Url::parse(&config.endpoint).map_err(|e| {
            SearchError::Unavailable(format!(
                "[[search.providers]] {}: endpoint {:?} is not a URL ({e}); write it as \"https://host/path\"",
                config.name, config.endpoint
            ))
        })?;
        if !matches!(endpoint.scheme(), "https" | "http") {
            return Err(SearchError::Unavailable(format!(
                "[[search.providers]] {}: endpoint must be an https:// (or http://) URL",
                config.name
            )));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| SearchError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpSearchProvider {
            name: config.name.clone(),
            kind: config.kind,
            endpoint,
            api_key_env: config.api_key_env.clone(),
            client,
        })
    }

    fn key(&self) -> Result<Option<String>, SearchError> {
        let Some(var) = &self.api_key_env else { return Ok(None) };
        match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(k)),
            _ => Err(SearchError::Unavailable(format!(
                "search provider {} needs its API key in the environment variable {var}, which is not set",
                self.name
            ))),
        }
    }
}

impl SearchProvider for HttpSearchProvider {
    fn search(&self, request: SearchRequest) -> SearchFuture<'_> {
        Box::pin(async move {
            let key = self.key()?;
            let mut url = self.endpoint.clone();
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("q", &request.text);
                match self.kind {
                    ProviderKind::Brave => {
                        q.append_pair("count", &request.max_results.to_string());
                        if let Some(lang) = &request.language {
                            q.append_pair("search_lang", lang);
                        }
                    }
                    ProviderKind::Searxng => {
                        q.append_pair("format", "json");
                        if let Some(lang) = &request.language {
                            q.append_pair("language", lang);
                        }
                    }
                }
            }
            let mut builder = self.client.get(url).timeout(request.timeout).header("accept", "application/json");
            if let Some(key) = key {
                builder = match self.kind {
                    ProviderKind::Brave => builder.header("x-subscription-token", key),
                    ProviderKind::Searxng => builder.bearer_auth(key),
                };
            }
            // `without_url`: the message must not echo the query URL into logs.
            let fail = |e: reqwest::Error| {
                SearchError::Failed(format!("search provider {} failed: {}", self.name, e.without_url()))
            };
            let mut resp = builder.send().await.map_err(fail)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(SearchError::Failed(format!("search provider {} answered HTTP {status}", self.name)));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(fail)? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(SearchError::Failed(format!(
                        "search provider {} answered more than {MAX_ANSWER_BYTES} bytes",
                        self.name
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            parse_answer(self.kind, &body).map_err(|e| {
                SearchError::Failed(format!("search provider {} answered something unreadable: {e}", self.name))
            })
        })
    }
}

/// The hits in a provider's JSON answer.
fn parse_answer(kind: ProviderKind, body: &[u8]) -> Result<Vec<SearchHit>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let (list, snippet_key) = match kind {
        ProviderKind::Brave => (value.pointer("/web/results"), "description"),
        ProviderKind::Searxng => (value.get("results"), "content"),
    };
    let Some(list) = list else { return Ok(Vec::new()) };
    let items = list.as_array().ok_or("the results are not a list")?;
    let field =
        |item: &serde_json::Value, k: &str| item.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(items
        .iter()
        .filter(|item| item.get("url").and_then(|u| u.as_str()).is_some())
        .map(|item| SearchHit {
            title: field(item, "title"),
            url: field(item, "url"),
            snippet: field(item, snippet_key),
        })
        .collect())
}

/// The providers this host offers, by name.
pub struct SearchProviders {
    default: Option<String>,
    max_results: u32,
    timeout: Duration,
    providers: BTreeMap<String, Arc<dyn SearchProvider>>,
}

impl SearchProviders {
    /// Builds the providers of `[search]`.
    pub fn from_config(config: &SearchConfig) -> Result<SearchProviders, SearchError> {
        let mut providers: BTreeMap<String, Arc<dyn SearchProvider>> = BTreeMap::new();
        for p in &config.providers {
            if p.name.trim().is_empty() {
                return Err(SearchError::Unavailable(
                    "a [[search.providers]] entry has an empty name; give it one, e.g. name = \"brave\"".into(),
                ));
            }
            if providers.contains_key(&p.name) {
                return Err(SearchError::Unavailable(format!("[[search.providers]] names {} twice; keep one", p.name)));
            }
            providers.insert(p.name.clone(), Arc::new(HttpSearchProvider::new(p)?));
        }
        let default = config.default.clone().or_else(|| config.providers.first().map(|p| p.name.clone()));
        if let Some(d) = &default {
            if !providers.contains_key(d) && !config.providers.is_empty() {
                return Err(SearchError::Unavailable(format!(
                    "[search] default = {d:?} names no [[search.providers]] entry"
                )));
            }
        }
        Ok(SearchProviders {
            default,
            max_results: config.max_results.max(1),
            timeout: Duration::from_millis(config.timeout_ms),
            providers,
        })
    }

    /// Adds or replaces the provider `name`; the first one added becomes the default
    /// when none is set.
    pub fn insert(&mut self, name: String, provider: Arc<dyn SearchProvider>) {
        if self.default.is_none() {
            self.default = Some(name.clone());
        }
        self.providers.insert(name, provider);
    }

    /// The provider names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }
}

fn check_provider(scope: &Scope, provider: &str) -> Result<(), String> {
    match scope {
        Scope::Search(s) => match &s.providers {
            Some(list) if !list.iter().any(|p| p == provider) => {
                Err(format!("search provider {provider} is not in scope; allowed providers: {}", list.join(", ")))
            }
            _ => Ok(()),
        },
        _ => Err(format!("{CAPABILITY} was granted without a search scope")),
    }
}

impl Host for CallState {
    async fn search(&mut self, q: Query) -> wasmtime::Result<Result<Vec<SearchResult>, CapError>> {
        try_budget!(
            self,
            q.text.len() + q.provider.as_ref().map_or(0, String::len) + q.language.as_ref().map_or(0, String::len)
        );
        Ok(self.web_search(q).await)
    }
}

impl CallState {
    async fn web_search(&mut self, q: Query) -> Result<Vec<SearchResult>, CapError> {
        if q.text.trim().is_empty() {
            return Err(CapError::InvalidInput("the query text is empty; say what to search for".into()));
        }
        if q.text.len() > MAX_QUERY_BYTES {
            return Err(CapError::InvalidInput(format!(
                "the query is {} bytes, more than {MAX_QUERY_BYTES}; shorten it",
                q.text.len()
            )));
        }
        if let Some(lang) = &q.language {
            if lang.is_empty() || lang.len() > 35 || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(CapError::InvalidInput(format!(
                    "language {lang:?} is not a BCP 47 tag such as \"en\" or \"pt-BR\""
                )));
            }
        }
        let providers = self.host.search.clone();
        let name = match q.provider.clone().or_else(|| providers.default.clone()) {
            Some(n) => n,
            None => {
                return Err(CapError::Unavailable(
                    "this host has no search provider; add a [[search.providers]] entry to omni.toml".into(),
                ))
            }
        };
        let checked = name.clone();
        // The audit names the provider only: queries can be personal.
        self.authorize(CAPABILITY, &format!("provider {name}"), &move |scope| check_provider(scope, &checked)).await?;
        let Some(provider) = providers.providers.get(&name).cloned() else {
            return Err(CapError::Unavailable(format!(
                "this host has no search provider {name:?}; configured: {}",
                if providers.providers.is_empty() { "none".to_string() } else { providers.names().join(", ") }
            )));
        };
        let max = q.max_results.unwrap_or(DEFAULT_RESULTS).clamp(1, providers.max_results);
        let request =
            SearchRequest { text: q.text, max_results: max, language: q.language, timeout: providers.timeout };
        let hits = match tokio::time::timeout(providers.timeout, provider.search(request)).await {
            Err(_) => {
                return Err(CapError::Io(format!(
                    "search provider {name} did not answer within {:?}",
                    providers.timeout
                )))
            }
            Ok(Err(SearchError::Unavailable(m))) => return Err(CapError::Unavailable(m)),
            Ok(Err(SearchError::Failed(m))) => return Err(CapError::Io(m)),
            Ok(Ok(hits)) => hits,
        };
        Ok(hits
            .into_iter()
            .take(max as usize)
            .map(|h| SearchResult {
                title: cap(h.title, MAX_FIELD_BYTES),
                url: cap(h.url, MAX_FIELD_BYTES),
                snippet: cap(h.snippet, MAX_FIELD_BYTES),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_answer_shapes() {
        let brave = br#"{"web":{"results":[{"title":"A","url":"https://a.example/","description":"about a"},{"title":"no url"}]}}"#;
        assert_eq!(
            parse_answer(ProviderKind::Brave, brave).unwrap(),
            vec![SearchHit { title: "A".into(), url: "https://a.example/".into(), snippet: "about a".into() }]
        );
        let searx = br#"{"results":[{"title":"B","url":"https://b.example/","content":"about b"}]}"#;
        assert_eq!(parse_answer(ProviderKind::Searxng, searx).unwrap()[0].snippet, "about b");
        assert!(parse_answer(ProviderKind::Searxng, b"not json").is_err());
        assert!(parse_answer(ProviderKind::Brave, br#"{"query":{}}"#).unwrap().is_empty());
    }

    #[test]
    fn config_is_checked() {
        let parse = |t: &str| crate::config::OmniConfig::parse(t, "omni.toml");
        let ok = parse(
            "[search]\ndefault = \"s\"\n[[search.providers]]\nname = \"s\"\nkind = \"searxng\"\nendpoint = \"http://127.0.0.1:9/search\"\n",
        )
        .unwrap();
        let providers = SearchProviders::from_config(&ok.search).unwrap();
        assert_eq!(providers.names(), vec!["s"]);
        assert!(parse("[search]\n[[search.providers]]\nname = \"s\"\nkind = \"google\"\nendpoint = \"x\"\n").is_err());
        let bad = parse("[search]\ndefault = \"nope\"\n[[search.providers]]\nname = \"s\"\nkind = \"brave\"\nendpoint = \"https://x.example/\"\n").unwrap();
        assert!(SearchProviders::from_config(&bad.search).is_err());
        let bad = parse("[[search.providers]]\nname = \"s\"\nkind = \"brave\"\nendpoint = \"not a url\"\n").unwrap();
        assert!(SearchProviders::from_config(&bad.search).is_err());
    }

    #[test]
    fn missing_key_names_the_variable_not_a_value() {
        let provider = HttpSearchProvider::new(&ProviderConfig {
            name: "brave".into(),
            kind: ProviderKind::Brave,
            endpoint: "https://api.search.brave.com/res/v1/web/search".into(),
            api_key_env: Some("OMNI_TEST_SURELY_UNSET_SEARCH_KEY".into()),
        })
        .unwrap();
        let err = provider.key().unwrap_err().to_string();
        assert!(err.contains("OMNI_TEST_SURELY_UNSET_SEARCH_KEY"), "{err}");
    }

    #[test]
    fn scope_providers_are_enforced() {
        let cap = omni_capabilities::lookup(CAPABILITY).unwrap();
        let v: toml::Value = toml::from_str("providers = ['brave']").unwrap();
        let scope = Scope::parse(cap, Some(&v), "scope").unwrap();
        assert!(check_provider(&scope, "brave").is_ok());
        assert!(check_provider(&scope, "google").unwrap_err().contains("allowed providers: brave"));
        let any = Scope::parse(cap, None, "scope").unwrap();
        assert!(check_provider(&any, "whatever").is_ok());
    }
}
