//! The protocol's message schema as a static table, generated from the .proto files at build time,
//! so rules that must cover every field (text rules, fuzzers, conformance walks) read the
//! descriptors instead of a hand-kept list.

/// What a field carries on the wire (protobuf wire types: LEN for strings, bytes and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `string`: UTF-8 text, checked by [`crate::text`].
    String,
    /// `bytes`: opaque.
    Bytes,
    /// A message; the index of its schema in [`MESSAGES`].
    Message(usize),
    /// Numbers, booleans and enums.
    Scalar,
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSchema {
    /// Field number.
    pub number: u32,
    /// Field name as in the .proto file (snake_case).
    pub name: &'static str,
    /// What it carries.
    pub kind: FieldKind,
    /// `repeated` (maps are repeated entry messages).
    pub repeated: bool,
}

/// One message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSchema {
    /// Fully qualified name, e.g. `confab.v1.SendMessage`.
    pub full_name: &'static str,
    /// Fields sorted by number.
    pub fields: &'static [FieldSchema],
}

impl MessageSchema {
    /// The field with `number`, if the schema has one (unknown fields are skipped by readers).
    pub fn field(&self, number: u32) -> Option<(usize, &'static FieldSchema)> {
        let i = self.fields.binary_search_by_key(&number, |f| f.number).ok()?;
        Some((i, &self.fields[i]))
    }
}

include!(concat!(env!("OUT_DIR"), "/schema.rs"));

/// The schema named `full_name` (e.g. `confab.v1.SendMessage`).
pub fn message(full_name: &str) -> Option<&'static MessageSchema> {
    MESSAGES.binary_search_by(|m| m.full_name.cmp(full_name)).ok().map(|i| &MESSAGES[i])
}

/// A way down from a message to one of the string fields below it: (message, field index)
/// steps, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<(usize, usize)>);

impl FieldPath {
    /// The dotted field names, e.g. `send_message.client_msg_id` from `ClientFrame`.
    pub fn name(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|(m, f)| MESSAGES[*m].fields[*f].name).collect();
        names.join(".")
    }

    /// The last step's message and field.
    pub fn leaf(&self) -> Option<(&'static MessageSchema, &'static FieldSchema)> {
        self.0.last().map(|(m, f)| (&MESSAGES[*m], &MESSAGES[*m].fields[*f]))
    }

    /// Encodes a message of the path's first type holding `value` at the path and nothing else
    /// (protobuf wire format: nested length-delimited fields).
    pub fn encode(&self, value: &[u8]) -> Vec<u8> {
        let mut inner = value.to_vec();
        for (m, f) in self.0.iter().rev() {
            let number = u64::from(MESSAGES[*m].fields[*f].number);
            let mut outer = Vec::with_capacity(inner.len() + 12);
            put_varint(&mut outer, (number << 3) | 2);
            put_varint(&mut outer, inner.len() as u64);
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Every string field reachable from message `root` (through nested and repeated messages; a
/// message type already on the way down is not entered again).
pub fn string_fields(root: usize) -> Vec<FieldPath> {
    fn go(msg: usize, path: &mut Vec<(usize, usize)>, out: &mut Vec<FieldPath>) {
        for (i, f) in MESSAGES[msg].fields.iter().enumerate() {
            path.push((msg, i));
            match f.kind {
                FieldKind::String => out.push(FieldPath(path.clone())),
                FieldKind::Message(inner) if !path.iter().any(|(m, _)| *m == inner) => go(inner, path, out),
                _ => {}
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    go(root, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_the_envelopes_and_their_requests() {
        let frame = &MESSAGES[CLIENT_FRAME];
        assert_eq!(frame.full_name, "confab.v1.ClientFrame");
        let (_, send) = frame.field(80).expect("send_message is field 80");
        assert_eq!(send.name, "send_message");
        let FieldKind::Message(i) = send.kind else { panic!("send_message is a message") };
        assert_eq!(MESSAGES[i].full_name, "confab.v1.SendMessage");
        assert!(MESSAGES[i].fields.iter().any(|f| f.name == "client_msg_id" && f.kind == FieldKind::String));
        assert_eq!(MESSAGES[SERVER_FRAME].full_name, "confab.v1.ServerFrame");
        assert!(message("confab.v1.Hello").is_some());
        let paths = string_fields(CLIENT_FRAME);
        let names: Vec<String> = paths.iter().map(FieldPath::name).collect();
        assert!(names.contains(&"send_message.client_msg_id".to_string()), "{names:?}");
        assert!(names.contains(&"hello.client_name".to_string()), "{names:?}");
    }
}
