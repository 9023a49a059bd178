//! Hostile sample: grows its memory without bound, 1 MiB at a time, touching every page so
//! the memory is really committed. The host's `max_memory_mb` limit must stop it (the
//! failed allocation aborts the instance) without hurting the host.
#![forbid(unsafe_code)]

use std::hint::black_box;

use omni_guest_sdk::{export_tools, NoArgs, ToolError};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn run(_: NoArgs) -> Result<usize, ToolError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; MIB];
        for byte in block.iter_mut().step_by(PAGE) {
            *byte = 0xA5;
        }
        hoard.push(black_box(block));
        // Never true: only here so the loop's result is observable and kept.
        if black_box(hoard.len()) == usize::MAX {
            return Ok(hoard.len());
        }
    }
}

export_tools!(run);
