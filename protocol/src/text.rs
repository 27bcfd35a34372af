//! The text rules of docs/protocol.md §5.4: every `string` field of a client frame, found by
//! walking the frame's bytes with the generated schema, is valid UTF-8, free of NUL and other
//! control characters, not blank, and bounded — checked before anything decodes or stores it.

use icu_properties::CodePointSetData;
use icu_properties::props::{DefaultIgnorableCodePoint, WhiteSpace};

use crate::schema::{CLIENT_FRAME, FieldKind, FieldSchema, MESSAGES, MessageSchema};

/// How one string field is checked (§5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// Line breaks (LF, CR, U+2028, U+2029) and tabs are allowed (message text, descriptions, SDP).
    pub multiline: bool,
    /// A secret nobody sees (a password): a blank value is not refused, so an account whose
    /// password is eight spaces keeps signing in.
    pub secret: bool,
    /// Longest value in bytes of UTF-8.
    pub max_bytes: usize,
}

/// The rule of a field named in no override: one visible line of at most 1024 bytes.
pub const DEFAULT_RULE: TextRule = TextRule { multiline: false, secret: false, max_bytes: 1024 };

const MULTILINE_TEXT: TextRule = TextRule { multiline: true, secret: false, max_bytes: 1024 * 1024 };
const SDP: TextRule = TextRule { multiline: true, secret: false, max_bytes: 64 * 1024 };
const TOKEN: TextRule = TextRule { multiline: false, secret: false, max_bytes: 4096 };
const PASSWORD: TextRule = TextRule { multiline: false, secret: true, max_bytes: 1024 };

/// Fields whose rule differs from [`DEFAULT_RULE`], by full field name. Everything else, including
/// any field added later, gets the default; a test checks every name here is a string field.
/// Byte caps here bound the work; the handlers enforce the documented per-field limits (§11-§20).
pub const OVERRIDES: &[(&str, TextRule)] = &[
    ("confab.v1.SendMessage.text", MULTILINE_TEXT),
    ("confab.v1.EditMessage.text", MULTILINE_TEXT),
    ("confab.v1.CreateConversation.description", MULTILINE_TEXT),
    ("confab.v1.UpdateConversation.description", MULTILINE_TEXT),
    ("confab.v1.ReportMessage.note", MULTILINE_TEXT),
    ("confab.v1.ResolveReport.note", MULTILINE_TEXT),
    ("confab.v1.CallSignal.sdp_offer", SDP),
    ("confab.v1.CallSignal.sdp_answer", SDP),
    ("confab.v1.Publish.sdp_offer", SDP),
    ("confab.v1.SubscriberAnswer.sdp_answer", SDP),
    ("confab.v1.IceCandidate.candidate", TOKEN),
    ("confab.v1.Hello.access_token", TOKEN),
    ("confab.v1.Hello.room_token", TOKEN),
    ("confab.v1.Authenticate.access_token", TOKEN),
    ("confab.v1.Refresh.refresh_token", TOKEN),
    ("confab.v1.RegisterPushTarget.token", TOKEN),
    ("confab.v1.Register.password", PASSWORD),
    ("confab.v1.Login.password", PASSWORD),
    ("confab.v1.ChangePassword.current_password", PASSWORD),
    ("confab.v1.ChangePassword.new_password", PASSWORD),
    ("confab.v1.ResetPassword.new_password", PASSWORD),
    ("confab.v1.DeleteAccount.password", PASSWORD),
];

/// Why a string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextFault {
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("contains a NUL character")]
    Nul,
    #[error("contains the control character U+{0:04X}")]
    Control(u32),
    #[error("is blank: only spaces or invisible characters")]
    Blank,
    #[error("is longer than {0} bytes")]
    TooLong(usize),
}

/// The outcome of checking a frame that breaks a text rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameTextError {
    /// A string field breaks its rule; `field` is its path below the envelope, e.g.
    /// `send_message.client_msg_id` (repeated and nested fields by name, no indexes).
    #[error("{field} {fault}")]
    Field { request_id: u64, field: String, fault: TextFault },
    /// The bytes are not a protobuf message this schema can walk (bad varint, truncated length,
    /// group wire types, nesting deeper than 32); the frame is undecodable.
    #[error("not a well-formed protobuf message")]
    Malformed,
}

/// Checks `text` against `rule` (§5.4). Empty values pass: whether a field is required is the
/// handler's business.
pub fn check(text: &str, rule: TextRule) -> Result<(), TextFault> {
    if text.len() > rule.max_bytes {
        return Err(TextFault::TooLong(rule.max_bytes));
    }
    let mut visible = text.is_empty();
    let white = CodePointSetData::new::<WhiteSpace>();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    for c in text.chars() {
        match c {
            '\0' => return Err(TextFault::Nul),
            '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' if rule.multiline => {}
            // C0, DEL, C1, and the Unicode line and paragraph separators in one-line fields.
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => {
                return Err(TextFault::Control(c as u32));
            }
            _ => {}
        }
        visible = visible || !(white.contains(c) || ignorable.contains(c) || c == BRAILLE_BLANK);
    }
    if visible || rule.secret { Ok(()) } else { Err(TextFault::Blank) }
}

/// U+2800 BRAILLE PATTERN BLANK: neither white space nor ignorable, but it draws nothing, and it is
/// the usual way to make a name look empty.
const BRAILLE_BLANK: char = '\u{2800}';

/// The search key of a name or title (§18, §12.7): NFC, then Unicode full case folding (Unicode
/// §3.13, CaseFolding.txt), so "Élodie", "élodie" and "ÉLODIE" (precomposed or not), "STRASSE"
/// and "straße", "ΣΊΣΥΦΟΣ" and "σίσυφος" have one key. Both stores compare these keys, written
/// by the server, never their own case rules. Accents are kept: "elodie" does not find "Élodie".
pub fn fold(s: &str) -> String {
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(s);
    icu_casemap::CaseMapperBorrowed::new().fold_string(&nfc).into_owned()
}

/// The rule of every field, by message index in [`MESSAGES`] then field index: the walk reads
/// it instead of matching names against [`OVERRIDES`] for every string of every frame.
fn rules() -> &'static [Vec<TextRule>] {
    static RULES: std::sync::LazyLock<Vec<Vec<TextRule>>> = std::sync::LazyLock::new(|| {
        MESSAGES.iter().map(|m| m.fields.iter().map(|f| rule_of(m, f)).collect()).collect()
    });
    &RULES
}

/// The rule of field `field` of message `msg`.
pub fn rule_of(msg: &MessageSchema, field: &FieldSchema) -> TextRule {
    let (pkg_and_msg, name) = (msg.full_name, field.name);
    OVERRIDES
        .iter()
        .find(|(full, _)| {
            full.len() == pkg_and_msg.len() + 1 + name.len()
                && full.starts_with(pkg_and_msg)
                && full.as_bytes()[pkg_and_msg.len()] == b'.'
                && full.ends_with(name)
        })
        .map_or(DEFAULT_RULE, |(_, r)| *r)
}

const MAX_DEPTH: usize = 32;

/// A cursor over protobuf wire bytes.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Next field: its number and value.
    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n != 0)?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Value::Len(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return None,
        };
        Some((number, value))
    }
}

/// A field's value on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed,
    Len(&'a [u8]),
}

/// A string field that broke its rule: where (schema indexes from the root) and why.
struct Fault {
    path: Vec<(usize, usize)>,
    fault: TextFault,
}

/// Walks `bytes` as message `msg`, checking every string field.
fn walk(msg: usize, bytes: &[u8], depth: usize) -> Result<Result<(), Fault>, FrameTextError> {
    if depth > MAX_DEPTH {
        return Err(FrameTextError::Malformed);
    }
    let schema = &MESSAGES[msg];
    let mut w = Wire { buf: bytes, pos: 0 };
    while w.pos < bytes.len() {
        let (number, value) = w.field().ok_or(FrameTextError::Malformed)?;
        let (Some((fi, f)), Value::Len(payload)) = (schema.field(number), value) else { continue };
        let outcome = match f.kind {
            FieldKind::String => match std::str::from_utf8(payload) {
                Err(_) => Err(Fault { path: Vec::new(), fault: TextFault::NotUtf8 }),
                Ok(s) => check(s, rules()[msg][fi]).map_err(|fault| Fault { path: Vec::new(), fault }),
            },
            FieldKind::Message(inner) => walk(inner, payload, depth + 1)?,
            FieldKind::Bytes | FieldKind::Scalar => Ok(()),
        };
        if let Err(mut fault) = outcome {
            fault.path.push((msg, fi));
            return Ok(Err(fault));
        }
    }
    Ok(Ok(()))
}

/// Checks every string field of an encoded `ClientFrame` (§5.4). The frame's `request_id` is
/// returned with a fault so the error answers the request that carried it.
pub fn check_client_frame(bytes: &[u8]) -> Result<(), FrameTextError> {
    let fault = match walk(CLIENT_FRAME, bytes, 0)? {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    let mut w = Wire { buf: bytes, pos: 0 };
    let mut request_id = 0;
    while let Some((number, value)) = w.field() {
        if let (1, Value::Varint(v)) = (number, value) {
            request_id = v;
        }
    }
    // Outermost first: the request (the oneof member's name), then the fields below it.
    let names: Vec<&str> = fault.path.iter().rev().map(|(m, f)| MESSAGES[*m].fields[*f].name).collect();
    let field = names.join(".");
    Err(FrameTextError::Field { request_id, field, fault: fault.fault })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::schema::{FieldPath, string_fields};
    use crate::v1::{ClientFrame, SendMessage, client_frame::Request};

    #[test]
    fn every_override_names_a_string_field() {
        for (full, _) in OVERRIDES {
            let (msg, field) = full.rsplit_once('.').expect("Message.field");
            let m = crate::schema::message(msg).unwrap_or_else(|| panic!("{full}: no message {msg}"));
            let f = m.fields.iter().find(|f| f.name == field).unwrap_or_else(|| panic!("{full}: no such field"));
            assert_eq!(f.kind, FieldKind::String, "{full}");
            assert_ne!(rule_of(m, f), DEFAULT_RULE, "{full}");
        }
    }

    #[test]
    fn checks_controls_blanks_and_lengths() {
        let line = DEFAULT_RULE;
        let text = TextRule { multiline: true, secret: false, max_bytes: 16 };
        assert_eq!(check("", line), Ok(()));
        assert_eq!(check("Élodie 🎉", line), Ok(()));
        assert_eq!(check("a\0b", line), Err(TextFault::Nul));
        assert_eq!(check("a\u{7}", line), Err(TextFault::Control(7)));
        assert_eq!(check("a\u{85}", line), Err(TextFault::Control(0x85)));
        assert_eq!(check("a\nb", line), Err(TextFault::Control(10)));
        assert_eq!(check("a\r\n\tb", text), Ok(()));
        assert_eq!(check("a\u{1b}", text), Err(TextFault::Control(0x1b)));
        for blank in
            ["   ", "\u{200b}", "\u{200b}\u{200d}\u{feff}", " \u{3000}\u{2060}", "\u{115f}", "\u{2800}\u{3164}"]
        {
            assert_eq!(check(blank, line), Err(TextFault::Blank), "{blank:?}");
        }
        assert_eq!(check("\n\t \n", text), Err(TextFault::Blank));
        assert_eq!(check("x\u{200b}", line), Ok(()));
        assert_eq!(check("a\u{2028}b", line), Err(TextFault::Control(0x2028)));
        assert_eq!(check("a\u{2028}b", text), Ok(()));
        for emoji in ["👨\u{200d}👩\u{200d}👧", "\u{2764}\u{fe0f}", "1\u{fe0f}\u{20e3}", "👍🏽", "\u{600}1"] {
            assert_eq!(check(emoji, line), Ok(()), "{emoji:?} is visible");
        }
        let password = TextRule { multiline: false, secret: true, max_bytes: 1024 };
        assert_eq!(check("        ", password), Ok(()), "a password of spaces keeps working");
        assert_eq!(check("pass\0word", password), Err(TextFault::Nul));
        assert_eq!(check(&"x".repeat(17), text), Err(TextFault::TooLong(16)));
    }

    #[test]
    fn folding_is_unicode_case_folding_after_nfc() {
        for (a, b) in [
            ("Élodie M", "élodie m"),
            ("ÉLODIE", "élodie"),
            ("E\u{301}lodie", "élodie"),
            ("ÄNNE", "änne"),
            ("ΣΊΣΥΦΟΣ", "σίσυφος"),
            ("ОЛЕГ", "олег"),
            ("STRASSE", "straße"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} / {b}");
        }
        assert_ne!(fold("elodie"), fold("Élodie"), "accents are kept");
    }

    #[test]
    fn names_the_field_and_the_request_wherever_the_string_is() {
        let frame = ClientFrame {
            request_id: 7,
            request: Some(Request::SendMessage(SendMessage {
                conversation_id: 1,
                text: "hi".into(),
                client_msg_id: "a\0".into(),
                ..Default::default()
            })),
        };
        let err = check_client_frame(&frame.encode_to_vec()).expect_err("NUL");
        assert_eq!(
            err,
            FrameTextError::Field { request_id: 7, field: "send_message.client_msg_id".into(), fault: TextFault::Nul }
        );
        // request_id after the request, as a client may encode it.
        let mut bytes = frame.encode_to_vec();
        bytes.drain(..2);
        bytes.extend_from_slice(&[8, 9]);
        assert!(matches!(check_client_frame(&bytes), Err(FrameTextError::Field { request_id: 9, .. })));
        let mut ok = frame.clone();
        if let Some(Request::SendMessage(s)) = &mut ok.request {
            s.client_msg_id = "k".into();
        }
        assert_eq!(check_client_frame(&ok.encode_to_vec()), Ok(()));
    }

    #[test]
    fn every_string_field_of_every_request_is_checked() {
        let paths: Vec<FieldPath> = string_fields(CLIENT_FRAME);
        assert!(paths.len() > 50, "{}", paths.len());
        for p in paths {
            for (value, fault) in
                [("\0", TextFault::Nul), ("\u{1}", TextFault::Control(1)), ("\u{200b}", TextFault::Blank)]
            {
                let bytes = p.encode(value.as_bytes());
                let (m, f) = p.leaf().expect("a path has a leaf");
                if fault == TextFault::Blank && rule_of(m, f).secret {
                    assert_eq!(check_client_frame(&bytes), Ok(()), "{}: a secret may be blank", p.name());
                    continue;
                }
                let err = check_client_frame(&bytes).expect_err(&p.name());
                assert_eq!(err, FrameTextError::Field { request_id: 0, field: p.name(), fault }, "{}", p.name());
            }
            assert!(matches!(
                check_client_frame(&p.encode(&[0xff, 0xfe])),
                Err(FrameTextError::Field { fault: TextFault::NotUtf8, .. })
            ));
        }
    }

    #[test]
    fn malformed_bytes_are_refused_without_panicking() {
        for bytes in [&[0x82, 0x05, 0xff][..], &[0x0b], &[0xff; 11], &[0x00], &[0x82, 0x05]] {
            assert_eq!(check_client_frame(bytes), Err(FrameTextError::Malformed), "{bytes:?}");
        }
        let mut deep = Vec::new();
        for _ in 0..40 {
            deep = FieldPath(vec![(CLIENT_FRAME, 0)]).encode(&deep);
        }
        assert!(check_client_frame(&deep).is_ok(), "request_id is a scalar: LEN on it is skipped");
    }
}
