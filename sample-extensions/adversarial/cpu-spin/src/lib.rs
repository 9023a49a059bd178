//! Hostile sample: loops forever. The host's `max_cpu_ms_per_call` (fuel or epoch
//! interruption) must stop the call and leave the host responsive.
#![forbid(unsafe_code)]

use std::hint::black_box;

use omni_guest_sdk::{export_tools, NoArgs, ToolError};

fn run(_: NoArgs) -> Result<u64, ToolError> {
    let mut counter: u64 = 0;
    loop {
        // `black_box` keeps the optimizer from proving the loop useless.
        counter = black_box(counter.wrapping_add(1));
    }
}

export_tools!(run);
