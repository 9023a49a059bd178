#![allow(missing_docs)] // generated from the WIT, whose doc comments it carries where it can
//! Host-side bindings generated from `wit/`.
//!
//! Every capability import is generated `async | trappable`: a backend may wait on I/O
//! without blocking the executor, and it may end the call with a trap when the guest
//! breaks a host-side bound (a trap ends only that call's instance).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "omni:extension/extension",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::omni::extension::tool::ToolError;
pub use omni::caps::types::{Error as CapError, RateLimitedInfo};
