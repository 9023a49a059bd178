//! Email (capability `messaging.email`).
//!
//! ```no_run
//! use omni_guest_sdk::email::Email;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let id = Email::new("ana@example.com", "Weekly report", "All green this week.")
//!     .cc("ops@example.com")
//!     .attach("report.csv", "text/csv", b"day,errors\nmon,0\n".to_vec())
//!     .send()?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::email as wit;
use crate::Result;

pub use wit::Attachment;

/// A message being built. The sender is the host's configured account.
pub type Email = wit::Message;

impl wit::Message {
    /// A plain-text message to one recipient.
    pub fn new(to: impl Into<String>, subject: impl Into<String>, body: impl Into<String>) -> Self {
        wit::Message {
            to: vec![to.into()],
            cc: Vec::new(),
            bcc: Vec::new(),
            subject: subject.into(),
            body_text: body.into(),
            body_html: None,
            reply_to: None,
            attachments: Vec::new(),
        }
    }

    /// Add a main recipient.
    pub fn to(mut self, address: impl Into<String>) -> Self {
        self.to.push(address.into());
        self
    }

    /// Add a copy recipient.
    pub fn cc(mut self, address: impl Into<String>) -> Self {
        self.cc.push(address.into());
        self
    }

    /// Add a blind-copy recipient.
    pub fn bcc(mut self, address: impl Into<String>) -> Self {
        self.bcc.push(address.into());
        self
    }

    /// Add an HTML alternative of the body.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.body_html = Some(html.into());
        self
    }

    /// Ask for replies at `address`.
    pub fn reply_to(mut self, address: impl Into<String>) -> Self {
        self.reply_to = Some(address.into());
        self
    }

    /// Attach a file.
    pub fn attach(mut self, filename: impl Into<String>, mime: impl Into<String>, data: Vec<u8>) -> Self {
        self.attachments.push(Attachment { filename: filename.into(), mime: mime.into(), data });
        self
    }

    /// Send it; returns the message id assigned by the mail server.
    ///
    /// # Errors
    ///
    /// As [`send`].
    pub fn send(&self) -> Result<String> {
        send(self)
    }
}

/// Send `message`; returns the message id assigned by the mail server.
///
/// # Errors
///
/// The host's refusal (an address outside the grant's `recipients`, the rate limit) or the
/// mail server's failure.
pub fn send(message: &Email) -> Result<String> {
    Ok(wit::send(message)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_fills_every_field() {
        let m = Email::new("a@x.org", "s", "b")
            .to("b@x.org")
            .cc("c@x.org")
            .bcc("d@x.org")
            .html("<p>b</p>")
            .reply_to("r@x.org")
            .attach("f.txt", "text/plain", b"hi".to_vec());
        assert_eq!(m.to, ["a@x.org", "b@x.org"]);
        assert_eq!((m.cc.len(), m.bcc.len(), m.attachments.len()), (1, 1, 1));
        assert_eq!(m.body_html.as_deref(), Some("<p>b</p>"));
        assert_eq!(m.reply_to.as_deref(), Some("r@x.org"));
        assert_eq!(m.attachments[0].data, b"hi");
    }
}
