//! The WIT in `../wit` is a contract the host depends on: capability key -> interface and
//! world names, the `result<_, error>` convention, docs for extension authors. These tests
//! read it with the same parser bindgen uses.

use std::path::PathBuf;

use wit_parser::{FunctionKind, InterfaceId, Resolve, Type, TypeDefKind, TypeId, TypeOwner, WorldItem, WorldKey};

/// (capability key, interface, world) for all 27 capabilities. The worlds are the key with
/// '.' -> '-', except the two clipboard ones, whose natural names are taken by their
/// interfaces (a package cannot hold a world and an interface of the same name).
const CAPABILITIES: [(&str, &str, &str); 27] = [
    ("network.http", "http", "network-http"),
    ("network.websocket", "websocket", "network-websocket"),
    ("filesystem.read", "fs-read", "filesystem-read"),
    ("filesystem.write", "fs-write", "filesystem-write"),
    ("clipboard.read", "clipboard-read", "clipboard-reader"),
    ("clipboard.write", "clipboard-write", "clipboard-writer"),
    ("messaging.sms", "sms", "messaging-sms"),
    ("messaging.email", "email", "messaging-email"),
    ("messaging.chat", "chat", "messaging-chat"),
    ("search.web", "web-search", "search-web"),
    ("process.spawn", "process", "process-spawn"),
    ("system.notifications", "notifications", "system-notifications"),
    ("system.scheduling", "scheduling", "system-scheduling"),
    ("device.camera", "camera", "device-camera"),
    ("device.microphone", "microphone", "device-microphone"),
    ("device.location", "location", "device-location"),
    ("storage.persistent", "kv", "storage-persistent"),
    ("browser.scrape", "browser", "browser-scrape"),
    ("ai.inference", "inference", "ai-inference"),
    ("channel.send", "channel", "channel-send"),
    ("app.automation", "automation", "app-automation"),
    ("vcs.operations", "vcs", "vcs-operations"),
    ("mcp.server", "mcp", "mcp-server"),
    ("code.intelligence", "code-intel", "code-intelligence"),
    ("debug.session", "debugger", "debug-session"),
    ("agent.spawn", "agent", "agent-spawn"),
    ("flowchart.invoke", "flowchart", "flowchart-invoke"),
];

struct Wit {
    resolve: Resolve,
    caps: wit_parser::PackageId,
    extension: wit_parser::PackageId,
}

fn load() -> Wit {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut resolve = Resolve::default();
    let (extension, _) =
        resolve.push_dir(&dir).unwrap_or_else(|e| panic!("the WIT in {} does not parse: {e:?}", dir.display()));
    let caps = resolve
        .packages
        .iter()
        .find(|(_, p)| p.name.namespace == "omni" && p.name.name == "caps")
        .map(|(id, _)| id)
        .expect("package omni:caps is missing");
    Wit { resolve, caps, extension }
}

impl Wit {
    fn interface(&self, name: &str) -> InterfaceId {
        *self.resolve.packages[self.caps]
            .interfaces
            .get(name)
            .unwrap_or_else(|| panic!("omni:caps has no interface `{name}`"))
    }

    fn imported_interfaces(&self, world: wit_parser::WorldId) -> Vec<InterfaceId> {
        self.resolve.worlds[world]
            .imports
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// Follow `use` and `type x = y` aliases to the type's definition.
    fn dealias(&self, mut id: TypeId) -> TypeId {
        while let TypeDefKind::Type(Type::Id(next)) = self.resolve.types[id].kind {
            id = next;
        }
        id
    }

    fn is_caps_error(&self, ty: &Type) -> bool {
        let Type::Id(id) = ty else { return false };
        let def = &self.resolve.types[self.dealias(*id)];
        def.name.as_deref() == Some("error") && def.owner == TypeOwner::Interface(self.interface("types"))
    }
}

#[test]
fn every_capability_has_its_interface_and_world() {
    let wit = load();
    let pkg = &wit.resolve.packages[wit.caps];
    assert_eq!(pkg.name.version.as_ref().map(ToString::to_string).as_deref(), Some("0.1.0"));
    for (key, interface, world) in CAPABILITIES {
        let iface = wit.interface(interface);
        let world_id = *pkg.worlds.get(world).unwrap_or_else(|| panic!("{key}: omni:caps has no world `{world}`"));
        assert!(
            wit.imported_interfaces(world_id).contains(&iface),
            "{key}: world `{world}` does not import interface `{interface}`"
        );
        assert!(wit.resolve.worlds[world_id].exports.is_empty(), "{key}: world `{world}` must only import");
    }
    // Nothing beyond the 27 capabilities and the shared types.
    assert_eq!(pkg.interfaces.len(), CAPABILITIES.len() + 1, "{:?}", pkg.interfaces.keys());
    assert_eq!(pkg.worlds.len(), CAPABILITIES.len(), "{:?}", pkg.worlds.keys());
}

#[test]
fn the_extension_world_imports_every_capability_and_exports_tool() {
    let wit = load();
    let world =
        *wit.resolve.packages[wit.extension].worlds.get("extension").expect("omni:extension has no world `extension`");
    let imported = wit.imported_interfaces(world);
    for (key, interface, _) in CAPABILITIES {
        assert!(
            imported.contains(&wit.interface(interface)),
            "{key}: the extension world does not include interface `{interface}`"
        );
    }
    let exports: Vec<String> = wit.resolve.worlds[world]
        .exports
        .keys()
        .map(|k| match k {
            WorldKey::Interface(id) => wit.resolve.id_of(*id).unwrap_or_default(),
            WorldKey::Name(n) => n.clone(),
        })
        .collect();
    assert_eq!(exports, ["omni:extension/tool@0.1.0"]);
}

#[test]
fn every_function_returns_result_with_the_shared_error() {
    let wit = load();
    let mut checked = 0;
    for (_, interface, _) in CAPABILITIES {
        let iface = &wit.resolve.interfaces[wit.interface(interface)];
        for (name, func) in &iface.functions {
            assert!(
                !matches!(func.kind, FunctionKind::Constructor(_)),
                "{interface}.{name}: constructors cannot return errors; use `static func open`"
            );
            let ok = match &func.result {
                Some(Type::Id(id)) => match &wit.resolve.types[wit.dealias(*id)].kind {
                    TypeDefKind::Result(r) => r.err.as_ref().is_some_and(|e| wit.is_caps_error(e)),
                    _ => false,
                },
                _ => false,
            };
            assert!(ok, "{interface}.{name} must return result<T, error> with omni:caps/types.error");
            checked += 1;
        }
    }
    // A floor, not an exact count: adding functions is fine, losing them is not.
    assert!(checked >= 69, "only {checked} functions found");
}

#[test]
fn interfaces_types_and_functions_are_documented() {
    let wit = load();
    let mut missing = Vec::new();
    for (_, interface, _) in CAPABILITIES.iter().copied().chain([("", "types", "")]) {
        let id = wit.interface(interface);
        let iface = &wit.resolve.interfaces[id];
        if iface.docs.contents.is_none() {
            missing.push(interface.to_string());
        }
        for (name, ty) in &iface.types {
            let def = &wit.resolve.types[*ty];
            // `use types.{error}` creates a local alias with no docs of its own.
            let is_use = matches!(def.kind, TypeDefKind::Type(Type::Id(t))
                if wit.resolve.types[t].owner != TypeOwner::Interface(id));
            if !is_use && def.docs.contents.is_none() {
                missing.push(format!("{interface}.{name}"));
            }
        }
        for (name, func) in &iface.functions {
            if func.docs.contents.is_none() {
                missing.push(format!("{interface}.{name}()"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented WIT items: {missing:?}");
}
