//! Messaging scopes (`messaging.sms`, `messaging.email`, `messaging.chat`):
//! recipient patterns and matching.

use super::{join, opt_rate, truncate, Fields, RateLimit};
use serde::{Deserialize, Serialize};
use std::fmt;
use url::Host;

/// Which messaging capability a [`MessagingScope`] belongs to; decides the recipient syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagingKind {
    /// `messaging.sms`: E.164 phone numbers.
    Sms,
    /// `messaging.email`: email addresses.
    Email,
    /// `messaging.chat`: chat handles or room ids, as the chat backend names them.
    Chat,
}

impl MessagingKind {
    /// The form a recipient is matched in, which is also the form to deliver to, so that
    /// the message goes exactly where the scope check looked: an email address in
    /// lowercase with its domain in ASCII, a phone number without separators, a chat
    /// recipient as written.
    ///
    /// ```
    /// use omni_capabilities::MessagingKind;
    /// assert_eq!(MessagingKind::Email.normalize("Ada@Bücher.de").unwrap(), "ada@xn--bcher-kva.de");
    /// assert_eq!(MessagingKind::Sms.normalize("+1 (555) 123-4567").unwrap(), "+15551234567");
    /// assert!(MessagingKind::Email.normalize("eve%evil.example@example.com").is_err());
    /// ```
    pub fn normalize(self, recipient: &str) -> Result<String, String> {
        let normalized = match self {
            MessagingKind::Email => normalize_email(recipient),
            MessagingKind::Sms => normalize_phone(recipient),
            MessagingKind::Chat => {
                if recipient.is_empty()
                    || recipient.chars().any(|c| c.is_whitespace() || c.is_control() || super::is_invisible(c))
                {
                    Err("empty, or contains spaces, control or invisible characters".into())
                } else {
                    Ok(recipient.to_owned())
                }
            }
        };
        normalized.map_err(|e| format!("recipient {:?} is not valid: {e}", truncate(recipient, 80)))
    }
}

/// One `recipients` entry.
///
/// | capability | exact | wildcard |
/// |---|---|---|
/// | email | `alice@example.com` (matched case-insensitively; the domain is converted to ASCII) | `*@example.com`: any address at exactly that domain, not its subdomains |
/// | sms | `+15551234567` (`+` and 1 to 15 digits) | `+1555*`: any number starting with those digits (at least 1) |
/// | chat | `#general`, `@ada` (any visible text without spaces or `*`) | `team-*`: any recipient starting with that text (non-empty) |
///
/// A lone `*` is always refused: name who may receive messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RecipientPattern {
    /// One recipient, normalized.
    Exact(String),
    /// Every email address at this (ASCII, lowercase) domain.
    EmailDomain(String),
    /// Every recipient starting with this text (`+1555` for phone numbers).
    Prefix(String),
}

impl RecipientPattern {
    /// Parses an entry for the given capability.
    pub fn parse(kind: MessagingKind, input: &str) -> Result<RecipientPattern, String> {
        let shown = truncate(input, 80);
        // Phone numbers are often written with separators; compare without them.
        let compact;
        let input = if kind == MessagingKind::Sms {
            compact = input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect::<String>();
            compact.as_str()
        } else {
            input
        };
        if input.is_empty() {
            return Err("empty recipient".into());
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control() || super::is_invisible(c)) {
            return Err(format!("recipient {shown:?} contains spaces, control or invisible characters"));
        }
        if input == "*" || input == "*@*" || input == "+*" {
            return Err(format!("recipient {shown:?} would allow everyone; list recipients or a narrower pattern"));
        }
        match kind {
            MessagingKind::Email => {
                if let Some(domain) = input.strip_prefix("*@") {
                    return email_domain(domain)
                        .map(RecipientPattern::EmailDomain)
                        .map_err(|e| format!("recipient {shown:?}: {e}"));
                }
                normalize_email(input).map(RecipientPattern::Exact).map_err(|e| format!("recipient {shown:?}: {e}"))
            }
            MessagingKind::Sms => {
                if let Some(prefix) = input.strip_suffix('*') {
                    let digits = prefix.strip_prefix('+').unwrap_or("");
                    if !prefix.starts_with('+')
                        || digits.is_empty()
                        || digits.len() > 14
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(format!("recipient {shown:?} is not a phone prefix; write '+', 1 to 14 digits, then '*' (e.g. \"+1555*\")"));
                    }
                    return Ok(RecipientPattern::Prefix(prefix.to_owned()));
                }
                normalize_phone(input).map(RecipientPattern::Exact).map_err(|e| format!("recipient {shown:?}: {e}"))
            }
            MessagingKind::Chat => {
                if input.len() > 256 {
                    return Err(format!("recipient {shown:?} is longer than 256 bytes"));
                }
                match input.find('*') {
                    None => Ok(RecipientPattern::Exact(input.to_owned())),
                    Some(i) if i + 1 == input.len() && i > 0 => Ok(RecipientPattern::Prefix(input[..i].to_owned())),
                    Some(_) => {
                        Err(format!("recipient {shown:?} has a '*' that is not at the end of a non-empty prefix"))
                    }
                }
            }
        }
    }

    /// Reads the canonical text form written by `Display` (used for stored
    /// scopes, where the capability is not known): entries were normalized when
    /// the manifest was parsed, so exact entries are kept verbatim.
    fn parse_canonical(input: &str) -> Result<RecipientPattern, String> {
        let shown = truncate(input, 80);
        if input.is_empty()
            || input.len() > 512
            || input.chars().any(|c| c.is_whitespace() || c.is_control() || super::is_invisible(c))
        {
            return Err(format!(
                "recipient {shown:?} is empty, too long, or contains spaces, control or invisible characters"
            ));
        }
        if let Some(domain) = input.strip_prefix("*@") {
            return email_domain(domain)
                .map(RecipientPattern::EmailDomain)
                .map_err(|e| format!("recipient {shown:?}: {e}"));
        }
        match input.find('*') {
            None => Ok(RecipientPattern::Exact(input.to_owned())),
            Some(i) if i + 1 == input.len() && i > 0 && input != "+*" => {
                Ok(RecipientPattern::Prefix(input[..i].to_owned()))
            }
            Some(_) => Err(format!("recipient {shown:?} has a '*' that is not at the end of a non-empty prefix")),
        }
    }

    /// Whether a normalized recipient matches.
    fn matches(&self, recipient: &str) -> bool {
        match self {
            RecipientPattern::Exact(r) => r == recipient,
            RecipientPattern::EmailDomain(d) => recipient.rsplit_once('@').is_some_and(|(_, rd)| rd == d),
            RecipientPattern::Prefix(p) => recipient.starts_with(p.as_str()),
        }
    }

    fn is_within(&self, other: &RecipientPattern) -> bool {
        match (self, other) {
            (RecipientPattern::Exact(r), o) => o.matches(r),
            (RecipientPattern::EmailDomain(a), RecipientPattern::EmailDomain(b)) => a == b,
            (RecipientPattern::Prefix(a), RecipientPattern::Prefix(b)) => a.starts_with(b.as_str()),
            _ => false,
        }
    }
}

fn email_domain(domain: &str) -> Result<String, String> {
    if domain.is_empty() || domain.contains(['*', '@', '/', ':', '[', ']', '%']) {
        return Err("the domain part is not a host name".into());
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.split('.').any(str::is_empty) {
        return Err("the domain has an empty label".into());
    }
    match Host::parse(domain) {
        Ok(Host::Domain(d)) if d.contains('.') && d.split('.').all(|l| !l.is_empty()) => Ok(d),
        Ok(Host::Domain(_)) => Err("the domain needs at least two labels (example.com)".into()),
        Ok(_) => Err("IP addresses are not accepted as email domains".into()),
        Err(e) => Err(format!("the domain is not a valid host name ({e})")),
    }
}

fn normalize_email(input: &str) -> Result<String, String> {
    let (local, domain) = input.rsplit_once('@').ok_or("not an email address (no '@')")?;
    if local.is_empty() || local.len() > 64 {
        return Err("the part before '@' must be 1 to 64 characters".into());
    }
    // A conservative dot-atom: what is matched is what a mail system routes on. `%` and
    // `!` are old routing syntax (`eve%evil.com@relay`), spaces and quotes change how an
    // address is split, and non-ASCII letters can fold into others (the Kelvin sign
    // lowercases to `k`, a full-width `＠` reads as `@` after NFKC).
    if !local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-'=".contains(&b)) {
        return Err("the part before '@' may hold only ASCII letters, digits and . _ + - ' =".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before '@' may not start or end with '.' or hold '..'".into());
    }
    Ok(format!("{}@{}", local.to_lowercase(), email_domain(domain)?))
}

fn normalize_phone(input: &str) -> Result<String, String> {
    let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    let digits = compact.strip_prefix('+').ok_or("a phone number must start with '+' and the country code (E.164)")?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a phone number is '+' followed by 1 to 15 digits".into());
    }
    Ok(compact)
}

impl fmt::Display for RecipientPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientPattern::Exact(r) => f.write_str(r),
            RecipientPattern::EmailDomain(d) => write!(f, "*@{d}"),
            RecipientPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl TryFrom<String> for RecipientPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RecipientPattern::parse_canonical(&s)
    }
}

impl From<RecipientPattern> for String {
    fn from(p: RecipientPattern) -> String {
        p.to_string()
    }
}

/// Who an extension may message, and how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagingScope {
    /// The capability this scope is for.
    pub kind: MessagingKind,
    /// Allowed recipients (at least one).
    pub recipients: Vec<RecipientPattern>,
    /// Messages per window; `None` leaves it to the host's global limits.
    pub rate_limit: Option<RateLimit>,
}

impl MessagingScope {
    pub(super) fn parse(kind: MessagingKind, f: &mut Fields<'_>) -> MessagingScope {
        let mut recipients = Vec::new();
        if let Some(items) = f.strings("recipients", true) {
            let mut good = Vec::new();
            for (path, s) in items {
                match RecipientPattern::parse(kind, &s) {
                    Ok(p) => f.push_unique(&mut good, path, p),
                    Err(message) => {
                        let fix = match kind {
                            MessagingKind::Email => {
                                "write an address (\"ada@example.com\") or a domain wildcard (\"*@example.com\")"
                            }
                            MessagingKind::Sms => "write an E.164 number (\"+15551234567\") or a prefix (\"+1555*\")",
                            MessagingKind::Chat => {
                                "write a recipient id (\"#general\") or a prefix ending in '*' (\"team-*\")"
                            }
                        };
                        f.problem(path, message, fix);
                    }
                }
            }
            recipients = good;
        }
        let rate_limit = f.rate_limit("rate_limit");
        MessagingScope { kind, recipients, rate_limit }
    }

    pub(super) fn write_toml(&self, t: &mut toml::Table) {
        super::put_display(t, "recipients", &self.recipients);
        super::put_rate(t, self.rate_limit);
    }

    /// Checks one recipient. Email addresses are compared in lowercase with
    /// the domain in ASCII; phone numbers may contain spaces, dashes, dots and
    /// parentheses, which are removed before comparing.
    ///
    /// ```
    /// use omni_capabilities::{lookup, Scope};
    /// let cap = lookup("messaging.email").unwrap();
    /// let v: toml::Value = toml::from_str("recipients = ['*@example.com', 'bob@other.org']").unwrap();
    /// let scope = Scope::parse(cap, Some(&v), "scope").unwrap();
    /// let m = scope.as_messaging().unwrap();
    /// assert!(m.check_recipient("Ada@Example.com").is_ok());
    /// assert!(m.check_recipient("ada@sub.example.com").is_err());
    /// assert!(m.check_recipient("bob@other.org").is_ok());
    /// ```
    pub fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        let shown = truncate(recipient, 80);
        let normalized = self.kind.normalize(recipient)?;
        if self.recipients.iter().any(|p| p.matches(&normalized)) {
            Ok(())
        } else {
            Err(format!("recipient {shown:?} is not in scope; allowed recipients: {}", join(&self.recipients)))
        }
    }

    pub(super) fn is_within(&self, other: &MessagingScope) -> bool {
        self.kind == other.kind
            && self.recipients.iter().all(|r| other.recipients.iter().any(|o| r.is_within(o)))
            && super::rate_within(self.rate_limit, other.rate_limit)
    }
}

impl fmt::Display for MessagingScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recipients: {}; rate_limit: {}", join(&self.recipients), opt_rate(self.rate_limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;
    use crate::scope::Scope;

    fn parse(cap: &str, text: &str) -> Result<Scope, Vec<String>> {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup(cap).unwrap_or_else(|| panic!("{cap}"));
        Scope::parse(info, Some(&value), "scope").map_err(|p| p.into_iter().map(|p| p.field).collect())
    }

    fn scope(cap: &str, text: &str) -> MessagingScope {
        match parse(cap, text) {
            Ok(Scope::Messaging(m)) => m,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn email_patterns() {
        let m = scope(
            "messaging.email",
            "recipients = ['Ada@Example.COM', '*@team.example.org', 'x@bücher.de']\nrate_limit = '5/hour'",
        );
        assert_eq!(m.recipients[0], RecipientPattern::Exact("ada@example.com".into()));
        assert_eq!(m.recipients[1], RecipientPattern::EmailDomain("team.example.org".into()));
        assert_eq!(m.recipients[2], RecipientPattern::Exact("x@xn--bcher-kva.de".into()));
        assert!(m.check_recipient("ada@example.com").is_ok());
        assert!(m.check_recipient("ADA@EXAMPLE.COM").is_ok());
        assert!(m.check_recipient("bob@team.example.org").is_ok());
        assert!(m.check_recipient("x@bücher.de").is_ok());
        assert!(m.check_recipient("bob@sub.team.example.org").is_err(), "domain wildcard excludes subdomains");
        assert!(m.check_recipient("bob@example.com").is_err());
        assert!(m.check_recipient("ada@example.com.evil.com").is_err());
        assert!(m.check_recipient("ada@example.com, eve@evil.com").is_err());
        assert!(m.check_recipient("eve@evil.com@team.example.org").is_err());
        // Cyrillic "а" in the domain is a different domain.
        assert!(m.check_recipient("ada@ex\u{0430}mple.com").is_err());
        let e = m.check_recipient("eve@evil.com").unwrap_err();
        assert!(e.contains("eve@evil.com") && e.contains("*@team.example.org"), "{e}");
        assert_eq!(
            m.to_string(),
            "recipients: ada@example.com, *@team.example.org, x@xn--bcher-kva.de; rate_limit: 5/hour"
        );
    }

    /// Recipients once matched on a normalized form and delivered raw: whatever passes
    /// now normalizes to one plain address, and that address is what is delivered.
    #[test]
    fn email_look_alikes_and_routing_tricks_are_refused() {
        let m = scope("messaging.email", "recipients = ['*@example.com', 'kim@example.org']");
        for raw in [
            "eve%evil.example@example.com",
            "evil.example!eve@example.com",
            "eve evil@example.com",
            "eve\u{2028}bcc@example.com",
            "eve\u{FF20}evil.example@example.com",
            "\u{212A}im@example.org",
            "\"eve@evil.example\"@example.com",
            ".eve@example.com",
            "e..ve@example.com",
        ] {
            assert!(m.check_recipient(raw).is_err(), "{raw:?} passed");
        }
        assert_eq!(MessagingKind::Email.normalize("Kim@EXAMPLE.org").as_deref(), Ok("kim@example.org"));
        assert_eq!(MessagingKind::Email.normalize("o'brien+x@example.com").as_deref(), Ok("o'brien+x@example.com"));
        assert_eq!(MessagingKind::Email.normalize("ada@ex\u{212A}.example.com").as_deref(), Ok("ada@exk.example.com"));
    }

    #[test]
    fn email_errors() {
        assert_eq!(parse("messaging.email", "").unwrap_err(), ["scope.recipients"]);
        assert_eq!(
            parse("messaging.email", "recipients = ['*', 'nobody', '*@com', '*@*.example.com', 'a@b@c.com', 'a b@c.com', '@example.com', 'ok@example.com', 'OK@example.com']")
                .unwrap_err(),
            ["scope.recipients[0]", "scope.recipients[1]", "scope.recipients[2]", "scope.recipients[3]", "scope.recipients[4]", "scope.recipients[5]", "scope.recipients[6]", "scope.recipients[8]"]
        );
    }

    #[test]
    fn sms_patterns() {
        let m = scope("messaging.sms", "recipients = ['+15551234567', '+4930*']");
        assert!(m.check_recipient("+1 (555) 123-4567").is_ok());
        assert!(m.check_recipient("+493012345").is_ok());
        assert!(m.check_recipient("+4931").is_err());
        assert!(m.check_recipient("15551234567").is_err(), "needs the + prefix");
        assert!(m.check_recipient("+1555123456a").is_err());
        assert_eq!(
            parse(
                "messaging.sms",
                "recipients = ['+*', '5551234', '+1-555*', '+12345678901234567', '+1*2', '+1555*', '+1 (555) *']"
            )
            .unwrap_err(),
            [
                "scope.recipients[0]",
                "scope.recipients[1]",
                "scope.recipients[3]",
                "scope.recipients[4]",
                "scope.recipients[5]",
                "scope.recipients[6]"
            ]
        );
    }

    #[test]
    fn chat_patterns() {
        let m = scope("messaging.chat", "recipients = ['#general', 'team-*']");
        assert!(m.check_recipient("#general").is_ok());
        assert!(m.check_recipient("team-infra").is_ok());
        assert!(m.check_recipient("#General").is_err(), "chat ids are case-sensitive");
        assert!(m.check_recipient("#general ").is_err());
        assert!(m.check_recipient("#gen\u{200B}eral").is_err());
        assert_eq!(
            parse("messaging.chat", "recipients = ['*', '*-team', 'a*b', 'has space', 'ok']").unwrap_err(),
            ["scope.recipients[0]", "scope.recipients[1]", "scope.recipients[2]", "scope.recipients[3]"]
        );
    }

    #[test]
    fn within() {
        let wide = Scope::Messaging(scope("messaging.email", "recipients = ['*@example.com']\nrate_limit = '10/hour'"));
        let narrow =
            Scope::Messaging(scope("messaging.email", "recipients = ['ada@example.com']\nrate_limit = '5/hour'"));
        assert!(narrow.is_within(&wide) && !wide.is_within(&narrow));
        let faster =
            Scope::Messaging(scope("messaging.email", "recipients = ['ada@example.com']\nrate_limit = '1/second'"));
        assert!(!faster.is_within(&wide));
        let sms_wide = Scope::Messaging(scope("messaging.sms", "recipients = ['+1*']"));
        let sms_narrow = Scope::Messaging(scope("messaging.sms", "recipients = ['+1555*', '+15550001111']"));
        assert!(sms_narrow.is_within(&sms_wide) && !sms_wide.is_within(&sms_narrow));
        let chat = Scope::Messaging(scope("messaging.chat", "recipients = ['+1*']"));
        assert!(!chat.is_within(&sms_wide), "different capability");
    }

    #[test]
    fn serde_round_trip_keeps_patterns() {
        for (cap, text) in [
            ("messaging.email", "recipients = ['Ada@Example.com', '*@example.org']"),
            ("messaging.sms", "recipients = ['+1 555 000 1111', '+44*']"),
            ("messaging.chat", "recipients = ['Ada@Example.com', '+1*', '#x', 'p*']"),
        ] {
            let m = scope(cap, text);
            let json = serde_json::to_string(&m).unwrap_or_default();
            let back: MessagingScope = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, m, "{json}");
        }
        assert!(serde_json::from_str::<RecipientPattern>("\"*\"").is_err());
    }
}
