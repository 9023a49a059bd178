//! Language-model chat completions (capability `ai.inference`).
//!
//! ```no_run
//! use omni_guest_sdk::inference::{self, ChatRequest, Message};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let haiku = inference::complete("Write a haiku about WebAssembly.")?;
//!
//! let reply = inference::chat(
//!     &ChatRequest::new(vec![
//!         Message::system("Answer in one word."),
//!         Message::user("What colour is the sky on a clear day?"),
//!     ])
//!     .max_tokens(5)
//!     .temperature(0.0),
//! )?;
//! println!("{} ({} tokens)", reply.content, reply.usage.total_tokens);
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::inference as wit;
use crate::Result;

pub use wit::{ChatRequest, ChatResponse, FinishReason, Message, Role, Usage};

impl Message {
    /// A system message (instructions that frame the conversation).
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: Role::System, content: content.into() }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: Role::User, content: content.into() }
    }

    /// An earlier answer of the model.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: Role::Assistant, content: content.into() }
    }
}

impl ChatRequest {
    /// A request for `messages` with the host's default model and settings.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest { messages, model: None, max_tokens: None, temperature: None, stop: Vec::new() }
    }

    /// Use `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Answer with at most `n` tokens (the grant's `max_tokens` also applies).
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sample at `temperature` (0.0 to 2.0).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Stop at `text`.
    pub fn stop(mut self, text: impl Into<String>) -> Self {
        self.stop.push(text.into());
        self
    }
}

/// Complete the conversation in `request`.
///
/// # Errors
///
/// The host's refusal (no grant, rate limit, token budget) or the provider's failure.
pub fn chat(request: &ChatRequest) -> Result<ChatResponse> {
    Ok(wit::chat(request)?)
}

/// The model's answer to the single user message `prompt`.
///
/// # Errors
///
/// As [`chat`].
pub fn complete(prompt: &str) -> Result<String> {
    Ok(chat(&ChatRequest::new(vec![Message::user(prompt)]))?.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_builder() {
        let r = ChatRequest::new(vec![Message::system("s"), Message::user("u"), Message::assistant("a")])
            .model("m")
            .max_tokens(7)
            .temperature(0.5)
            .stop("\n\n");
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::Assistant]);
        assert_eq!((r.model.as_deref(), r.max_tokens, r.temperature), (Some("m"), Some(7), Some(0.5)));
        assert_eq!(r.stop, ["\n\n"]);
    }
}
