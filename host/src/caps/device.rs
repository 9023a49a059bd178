//! `device.camera`, `device.microphone` and `device.location`: the device's sensors.
//!
//! None of the three has scope fields: a grant covers every camera, microphone or fix the
//! backend offers. The host bounds what a call may ask for (a recording's length, the wait
//! for a position) and checks the arguments before a backend sees them. A headless host
//! has no sensors, so the default backend ([`NotConfigured`]) answers `unavailable`; an
//! embedder plugs real ones in with [`Integrations::with_camera`],
//! [`Integrations::with_microphone`] and [`Integrations::with_location`].
//!
//! [`Integrations::with_camera`]: super::Integrations::with_camera
//! [`Integrations::with_microphone`]: super::Integrations::with_microphone
//! [`Integrations::with_location`]: super::Integrations::with_location

use super::integrations::{check_name, BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::{camera, location, microphone};
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::camera::Image;
pub use crate::bindings::omni::caps::location::Position;
pub use crate::bindings::omni::caps::microphone::Audio;

const CAMERA: &str = "device.camera";
const MICROPHONE: &str = "device.microphone";
const LOCATION: &str = "device.location";

/// Longest recording one call may ask for, in milliseconds (longer requests are cut to it).
pub const MAX_RECORDING_MS: u32 = 60_000;
/// Longest wait for a position fix, in milliseconds (longer waits are cut to it).
pub const MAX_LOCATION_WAIT_MS: u32 = 30_000;
/// Largest picture side a call may ask for, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// A camera an embedder plugs in.
pub trait CameraBackend: Send + Sync {
    /// Takes one picture with `device` (a name from [`devices`](Self::devices), or the
    /// default camera), scaled down to fit `max_width` by `max_height` when given.
    fn capture(
        &self,
        device: Option<String>,
        max_width: Option<u32>,
        max_height: Option<u32>,
    ) -> BackendFuture<'_, Image>;
    /// The names of the cameras.
    fn devices(&self) -> BackendFuture<'_, Vec<String>>;
}

/// A microphone an embedder plugs in.
pub trait MicrophoneBackend: Send + Sync {
    /// Records `duration_ms` milliseconds (at most [`MAX_RECORDING_MS`]) from `device`.
    fn record(&self, duration_ms: u32, device: Option<String>) -> BackendFuture<'_, Audio>;
    /// The names of the microphones.
    fn devices(&self) -> BackendFuture<'_, Vec<String>>;
}

/// A position source an embedder plugs in.
pub trait LocationBackend: Send + Sync {
    /// The current position, waiting at most `timeout_ms` (at most
    /// [`MAX_LOCATION_WAIT_MS`]) for a fix.
    fn current(&self, timeout_ms: u32) -> BackendFuture<'_, Position>;
}

impl CameraBackend for NotConfigured {
    fn capture(&self, _: Option<String>, _: Option<u32>, _: Option<u32>) -> BackendFuture<'_, Image> {
        NotConfigured::future(CAMERA, "camera", "with_camera")
    }
    fn devices(&self) -> BackendFuture<'_, Vec<String>> {
        NotConfigured::future(CAMERA, "camera", "with_camera")
    }
}

impl MicrophoneBackend for NotConfigured {
    fn record(&self, _: u32, _: Option<String>) -> BackendFuture<'_, Audio> {
        NotConfigured::future(MICROPHONE, "microphone", "with_microphone")
    }
    fn devices(&self) -> BackendFuture<'_, Vec<String>> {
        NotConfigured::future(MICROPHONE, "microphone", "with_microphone")
    }
}

impl LocationBackend for NotConfigured {
    fn current(&self, _: u32) -> BackendFuture<'_, Position> {
        NotConfigured::future(LOCATION, "position source", "with_location")
    }
}

/// Device capabilities have no scope: a grant covers the device.
fn any_device(_: &omni_capabilities::Scope) -> Result<(), String> {
    Ok(())
}

fn check_device(device: &Option<String>) -> Result<(), CapError> {
    match device {
        Some(d) => check_name("device name", d),
        None => Ok(()),
    }
}

fn check_side(what: &str, side: Option<u32>) -> Result<(), CapError> {
    match side {
        Some(0) => {
            Err(CapError::InvalidInput(format!("{what} is 0; pass at least 1 pixel, or none for the camera's size")))
        }
        Some(s) if s > MAX_IMAGE_SIDE => Err(CapError::InvalidInput(format!(
            "{what} is {s} pixels, more than the host allows ({MAX_IMAGE_SIDE}); ask for a smaller picture"
        ))),
        _ => Ok(()),
    }
}

impl camera::Host for CallState {
    async fn capture(
        &mut self,
        device: Option<String>,
        max_width: Option<u32>,
        max_height: Option<u32>,
    ) -> wasmtime::Result<Result<Image, CapError>> {
        try_budget!(self, device.as_deref().map_or(0, str::len));
        if let Err(e) =
            check_device(&device).and(check_side("max-width", max_width)).and(check_side("max-height", max_height))
        {
            return Ok(Err(e));
        }
        let target = format!("capture {}", device.as_deref().unwrap_or("default camera"));
        if let Err(e) = self.authorize(CAMERA, &target, &any_device).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.camera.clone();
        let result = backend.capture(device, max_width, max_height).await;
        Ok(self.backend_result(CAMERA, &target, result).await)
    }

    async fn devices(&mut self) -> wasmtime::Result<Result<Vec<String>, CapError>> {
        if let Err(e) = self.authorize(CAMERA, "list cameras", &any_device).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.camera.clone();
        let result = backend.devices().await;
        Ok(self.backend_result(CAMERA, "list cameras", result).await)
    }
}

impl microphone::Host for CallState {
    async fn record_audio(
        &mut self,
        duration_ms: u32,
        device: Option<String>,
    ) -> wasmtime::Result<Result<Audio, CapError>> {
        try_budget!(self, device.as_deref().map_or(0, str::len));
        if let Err(e) = check_device(&device) {
            return Ok(Err(e));
        }
        if duration_ms == 0 {
            return Ok(Err(CapError::InvalidInput("duration-ms is 0; ask for at least 1 millisecond of sound".into())));
        }
        let duration_ms = duration_ms.min(MAX_RECORDING_MS);
        let target = format!("record {duration_ms} ms from {}", device.as_deref().unwrap_or("default microphone"));
        if let Err(e) = self.authorize(MICROPHONE, &target, &any_device).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.microphone.clone();
        let result = backend.record(duration_ms, device).await;
        Ok(self.backend_result(MICROPHONE, &target, result).await)
    }

    async fn devices(&mut self) -> wasmtime::Result<Result<Vec<String>, CapError>> {
        if let Err(e) = self.authorize(MICROPHONE, "list microphones", &any_device).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.microphone.clone();
        let result = backend.devices().await;
        Ok(self.backend_result(MICROPHONE, "list microphones", result).await)
    }
}

impl location::Host for CallState {
    async fn current(&mut self, timeout_ms: Option<u32>) -> wasmtime::Result<Result<Position, CapError>> {
        let timeout_ms = timeout_ms.unwrap_or(MAX_LOCATION_WAIT_MS).min(MAX_LOCATION_WAIT_MS);
        if let Err(e) = self.authorize(LOCATION, "current position", &any_device).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.location.clone();
        let result = backend.current(timeout_ms).await;
        Ok(self.backend_result(LOCATION, "current position", result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::IntegrationError;

    #[tokio::test]
    async fn the_default_devices_are_unavailable_and_say_how_to_plug_one_in() {
        let cam = CameraBackend::devices(&NotConfigured).await.unwrap_err();
        let mic = MicrophoneBackend::record(&NotConfigured, 10, None).await.unwrap_err();
        let loc = NotConfigured.current(10).await.unwrap_err();
        for (e, method) in [(cam, "with_camera"), (mic, "with_microphone"), (loc, "with_location")] {
            match e {
                IntegrationError::Unavailable(m) => {
                    assert!(m.contains(method) && m.contains("OmniBuilder::integrations"), "{m}")
                }
                other => panic!("expected unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn picture_sizes_are_bounded() {
        assert!(check_side("max-width", None).is_ok());
        assert!(check_side("max-width", Some(640)).is_ok());
        assert!(check_side("max-width", Some(0)).is_err());
        assert!(check_side("max-width", Some(MAX_IMAGE_SIDE + 1)).is_err());
    }
}
