//! Notes: a small personal notebook kept in the extension's key-value store
//! (capability `storage.persistent`).
//!
//! Each note is stored as JSON under `note:<id>` (the id zero-padded, so keys sort in
//! creation order); `meta:next-id` holds the next id to hand out.
#![forbid(unsafe_code)]

use omni_guest_sdk::{export_tools, kv, NoArgs, ToolError};
use serde::{Deserialize, Serialize};

/// Longest accepted title, in characters.
const MAX_TITLE: usize = 200;
/// Longest accepted body, in characters.
const MAX_BODY: usize = 100_000;
/// Most tags on one note, and longest tag.
const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 50;
/// Most notes `list` and `search` look at; the store's quota keeps the real number lower.
const MAX_NOTES: u32 = 10_000;

const NOTE_PREFIX: &str = "note:";
const NEXT_ID_KEY: &str = "meta:next-id";

/// A stored note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: u64,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time, RFC 3339 in UTC.
    pub created: String,
}

/// What `list` shows of a note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: u64,
    pub title: String,
    pub created: String,
}

/// Where notes live. The extension uses the host's key-value store; tests use a map.
pub trait Store {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ToolError>;
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), ToolError>;
    fn delete(&mut self, key: &str) -> Result<bool, ToolError>;
    fn keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, ToolError>;
}

/// The host's key-value store.
struct KvStore;

impl Store for KvStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ToolError> {
        Ok(kv::get(key)?)
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), ToolError> {
        Ok(kv::set(key, value)?)
    }
    fn delete(&mut self, key: &str) -> Result<bool, ToolError> {
        Ok(kv::delete(key)?)
    }
    fn keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, ToolError> {
        Ok(kv::list(prefix, limit)?)
    }
}

/// Arguments of `add`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Arguments of `search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    pub query: String,
}

/// Arguments of `delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    pub id: u64,
}

/// Result of `delete`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Deleted {
    pub deleted: bool,
}

fn note_key(id: u64) -> String {
    // 20 digits hold every u64, so lexical key order is numeric id order.
    format!("{NOTE_PREFIX}{id:020}")
}

fn load<S: Store>(store: &S, key: &str) -> Result<Option<Note>, ToolError> {
    match store.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ToolError::failed(format!("stored note {key} is corrupt: {e}"))),
    }
}

fn save<S: Store>(store: &mut S, note: &Note) -> Result<(), ToolError> {
    let json = serde_json::to_vec(note).map_err(|e| ToolError::failed(format!("cannot encode the note: {e}")))?;
    store.set(&note_key(note.id), &json)
}

fn all_notes<S: Store>(store: &S) -> Result<Vec<Note>, ToolError> {
    let mut notes = Vec::new();
    for key in store.keys(NOTE_PREFIX, MAX_NOTES)? {
        // A key listed a moment ago may be gone if another call deleted it meanwhile.
        if let Some(note) = load(store, &key)? {
            notes.push(note);
        }
    }
    Ok(notes)
}

fn validate(args: &AddArgs) -> Result<(), ToolError> {
    let title = args.title.trim();
    if title.is_empty() {
        return Err(ToolError::invalid("`title` must not be empty"));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(ToolError::invalid(format!("`title` is longer than {MAX_TITLE} characters; shorten it")));
    }
    if args.body.chars().count() > MAX_BODY {
        return Err(ToolError::invalid(format!("`body` is longer than {MAX_BODY} characters; split the note")));
    }
    if args.tags.len() > MAX_TAGS {
        return Err(ToolError::invalid(format!("at most {MAX_TAGS} `tags` are allowed")));
    }
    if let Some(tag) = args.tags.iter().find(|t| t.trim().is_empty() || t.chars().count() > MAX_TAG_LEN) {
        return Err(ToolError::invalid(format!("tag {tag:?} must be 1 to {MAX_TAG_LEN} characters")));
    }
    Ok(())
}

/// Add a note created at `created`.
pub fn add_note<S: Store>(store: &mut S, args: AddArgs, created: String) -> Result<Note, ToolError> {
    validate(&args)?;
    let mut id = match store.get(NEXT_ID_KEY)? {
        None => 1,
        Some(bytes) => serde_json::from_slice::<u64>(&bytes)
            .map_err(|e| ToolError::failed(format!("the id counter is corrupt: {e}")))?,
    };
    // Another call may have taken the id between our read and write: skip taken ids
    // rather than overwrite a note.
    while store.get(&note_key(id))?.is_some() {
        id = id.checked_add(1).ok_or_else(|| ToolError::failed("note ids are exhausted"))?;
    }
    let next = id.checked_add(1).ok_or_else(|| ToolError::failed("note ids are exhausted"))?;
    store.set(NEXT_ID_KEY, next.to_string().as_bytes())?;
    let mut tags: Vec<String> = args.tags.iter().map(|t| t.trim().to_string()).collect();
    tags.dedup();
    let note = Note { id, title: args.title.trim().to_string(), body: args.body, tags, created };
    save(store, &note)?;
    Ok(note)
}

/// Every note's id, title and creation time, oldest first.
pub fn list_notes<S: Store>(store: &S) -> Result<Vec<Summary>, ToolError> {
    Ok(all_notes(store)?.into_iter().map(|n| Summary { id: n.id, title: n.title, created: n.created }).collect())
}

/// Notes whose title, body or a tag contains `query`, ignoring case.
pub fn search_notes<S: Store>(store: &S, query: &str) -> Result<Vec<Note>, ToolError> {
    let needle = query.trim().to_lowercase();
    if needle.is_empty() {
        return Err(ToolError::invalid("`query` must not be empty"));
    }
    Ok(all_notes(store)?
        .into_iter()
        .filter(|n| {
            n.title.to_lowercase().contains(&needle)
                || n.body.to_lowercase().contains(&needle)
                || n.tags.iter().any(|t| t.to_lowercase().contains(&needle))
        })
        .collect())
}

/// Delete note `id`; whether it existed.
pub fn delete_note<S: Store>(store: &mut S, id: u64) -> Result<Deleted, ToolError> {
    Ok(Deleted { deleted: store.delete(&note_key(id))? })
}

/// `secs` since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-22T00:07:05Z`.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

fn now() -> String {
    // The host provides the wall clock through WASI; before 1970 cannot happen there.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn add(args: AddArgs) -> Result<Note, ToolError> {
    add_note(&mut KvStore, args, now())
}

fn list(_: NoArgs) -> Result<Vec<Summary>, ToolError> {
    list_notes(&KvStore)
}

fn search(args: SearchArgs) -> Result<Vec<Note>, ToolError> {
    search_notes(&KvStore, &args.query)
}

fn delete(args: DeleteArgs) -> Result<Deleted, ToolError> {
    delete_note(&mut KvStore, args.id)
}

export_tools!(add, list, search, delete);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct MemStore(BTreeMap<String, Vec<u8>>);

    impl Store for MemStore {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ToolError> {
            Ok(self.0.get(key).cloned())
        }
        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), ToolError> {
            self.0.insert(key.to_string(), value.to_vec());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<bool, ToolError> {
            Ok(self.0.remove(key).is_some())
        }
        fn keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, ToolError> {
            Ok(self.0.keys().filter(|k| k.starts_with(prefix)).take(limit as usize).cloned().collect())
        }
    }

    fn args(title: &str, body: &str, tags: &[&str]) -> AddArgs {
        AddArgs { title: title.into(), body: body.into(), tags: tags.iter().map(|t| t.to_string()).collect() }
    }

    fn sample() -> MemStore {
        let mut s = MemStore::default();
        add_note(&mut s, args("Groceries", "Milk, eggs, BREAD", &["home"]), "t1".into()).unwrap();
        add_note(&mut s, args("Rust talk", "Lifetimes and traits", &["Work", "rust"]), "t2".into()).unwrap();
        add_note(&mut s, args("Call Ana", "about the trip", &[]), "t3".into()).unwrap();
        s
    }

    #[test]
    fn add_assigns_increasing_ids_and_stores_json() {
        let mut s = sample();
        let n = add_note(&mut s, args("  Spaced  ", "", &[" a "]), "t4".into()).unwrap();
        assert_eq!((n.id, n.title.as_str(), n.tags.clone()), (4, "Spaced", vec!["a".to_string()]));
        let stored: Note = serde_json::from_slice(&s.0[&note_key(4)]).unwrap();
        assert_eq!(stored, n);
        assert_eq!(s.0[NEXT_ID_KEY], b"5");
    }

    #[test]
    fn ids_are_not_reused_after_delete_or_counter_loss() {
        let mut s = sample();
        assert_eq!(delete_note(&mut s, 3).unwrap(), Deleted { deleted: true });
        assert_eq!(add_note(&mut s, args("x", "", &[]), "t".into()).unwrap().id, 4);
        // A stale counter must not overwrite existing notes.
        s.0.insert(NEXT_ID_KEY.into(), b"1".to_vec());
        assert_eq!(add_note(&mut s, args("y", "", &[]), "t".into()).unwrap().id, 3);
        assert_eq!(add_note(&mut s, args("z", "", &[]), "t".into()).unwrap().id, 5);
    }

    #[test]
    fn list_is_in_creation_order() {
        let s = sample();
        let titles: Vec<_> = list_notes(&s).unwrap().into_iter().map(|n| (n.id, n.title, n.created)).collect();
        assert_eq!(
            titles,
            [
                (1, "Groceries".to_string(), "t1".to_string()),
                (2, "Rust talk".into(), "t2".into()),
                (3, "Call Ana".into(), "t3".into())
            ]
        );
    }

    #[test]
    fn search_ignores_case_across_title_body_and_tags() {
        let s = sample();
        let ids = |q: &str| -> Vec<u64> { search_notes(&s, q).unwrap().iter().map(|n| n.id).collect() };
        assert_eq!(ids("bread"), [1]);
        assert_eq!(ids("RUST"), [2]);
        assert_eq!(ids("work"), [2]);
        assert_eq!(ids("ana"), [3]);
        assert_eq!(ids("a"), [1, 2, 3]);
        assert!(ids("nothing like this").is_empty());
        assert!(search_notes(&s, "  ").is_err());
    }

    #[test]
    fn delete_reports_whether_the_note_existed() {
        let mut s = sample();
        assert!(delete_note(&mut s, 2).unwrap().deleted);
        assert!(!delete_note(&mut s, 2).unwrap().deleted);
        assert!(!delete_note(&mut s, 99).unwrap().deleted);
        assert_eq!(list_notes(&s).unwrap().len(), 2);
    }

    #[test]
    fn bad_notes_are_refused_with_the_field_named() {
        let mut s = MemStore::default();
        let e = add_note(&mut s, args(" ", "b", &[]), "t".into()).unwrap_err();
        assert!(e.message().contains("`title`"), "{e}");
        let e = add_note(&mut s, args(&"x".repeat(201), "b", &[]), "t".into()).unwrap_err();
        assert!(e.message().contains("`title`"), "{e}");
        let e = add_note(&mut s, args("t", "b", &[""]), "t".into()).unwrap_err();
        assert!(e.message().contains("tag"), "{e}");
        let many: Vec<&str> = vec!["x"; 21];
        assert!(add_note(&mut s, args("t", "b", &many), "t".into()).is_err());
        assert!(s.0.is_empty(), "nothing may be stored for refused notes");
    }

    #[test]
    fn corrupt_records_are_reported_not_panicked_on() {
        let mut s = sample();
        s.0.insert(note_key(2), b"{not json".to_vec());
        let e = list_notes(&s).unwrap_err();
        assert!(e.message().contains("corrupt"), "{e}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_306_025), "2026-11-22T00:07:05Z");
    }

    #[test]
    fn tool_arguments_parse_through_the_sdk() {
        let out =
            omni_guest_sdk::invoke(|a: AddArgs| Ok::<_, ToolError>(a.tags.len()), r#"{"title": "t", "body": "b"}"#)
                .unwrap();
        assert_eq!(out, "0");
        assert!(omni_guest_sdk::invoke(|a: DeleteArgs| Ok::<_, ToolError>(a.id), r#"{"id": -1}"#).is_err());
    }
}
