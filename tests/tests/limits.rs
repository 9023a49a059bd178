//! Concurrency slots: `max_concurrent_calls` bounds the calls running at once, and an
//! extra call waits for a slot instead of failing.

use std::sync::Arc;
use std::time::Duration;

use omni_tests::{config_with_standin, host, install_granting_all, runtime, StandIn};

#[test]
fn fifth_call_to_a_four_slot_extension_waits_then_completes() {
    let standin = StandIn::start().expect("stand-in");
    // Every forecast request waits at the stand-in until released, so the calls that hold
    // a slot stay in their host call.
    standin.hold();
    let (_dir, omni) = host(config_with_standin(&standin));
    install_granting_all(&omni, "dev.omni.weather");
    let omni = Arc::new(omni);
    let rt = runtime();
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let omni = omni.clone();
            rt.spawn(async move {
                let args = format!(r#"{{"latitude": {i}, "longitude": 0}}"#);
                omni.call("dev.omni.weather", "get_weather", &args).await
            })
        })
        .collect();
    // Wait until four requests are parked at the stand-in (bounded, in case it never is).
    for _ in 0..400 {
        if standin.in_flight() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(standin.in_flight(), 4, "four calls should hold the four slots");
    // The fifth call is queued for a slot: it has not reached the network.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(standin.requests(), 4, "the fifth call must wait for a slot");
    standin.release();
    for h in handles {
        let out = rt.block_on(h).expect("task").expect("every call completes");
        assert!(out.output.contains("temperature"), "{}", out.output);
    }
    assert_eq!(standin.requests(), 5);
    assert_eq!(standin.max_in_flight(), 4, "never more than four at once");
}
