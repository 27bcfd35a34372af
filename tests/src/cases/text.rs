//! Cases for the text rules (docs/protocol.md §5.4): every string field of every request, found
//! by walking the protocol's schema, refuses NUL, control characters, invisible-only values and
//! invalid UTF-8 with INVALID_ARGUMENT naming the field, before anything is stored.

use confab_protocol::schema::{CLIENT_FRAME, FieldPath, string_fields};

use bytes::Bytes;

use super::common::{account, call, req};
use super::*;

/// One request frame carrying `value` at `path` (below ClientFrame), with `request_id`.
fn frame_with(request_id: u64, path: &FieldPath, value: &[u8]) -> Bytes {
    let mut bytes = Vec::new();
    prost::encoding::uint64::encode(1, &request_id, &mut bytes);
    bytes.extend_from_slice(&path.encode(value));
    Bytes::from(bytes)
}

/// §5.4: walks every string field of every request (from the schema, so a new field cannot
/// escape) on a signed-in connection with NUL, a lone control character, an invisible-only value
/// (except for passwords, which may be blank) and invalid UTF-8: each is INVALID_ARGUMENT naming
/// the field, and the connection stays usable.
pub(super) async fn every_string_field_obeys_the_text_rules(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "txt").await?;
    let mut raw = signed_in_raw(&t, &a.auth.access_token).await?;
    let paths = string_fields(CLIENT_FRAME);
    ensure!(paths.len() > 50, "the schema lists only {} string fields", paths.len());
    let mut id = 10;
    for path in &paths {
        let values: [&[u8]; 5] = [b"\0", b"a\0b", "\u{1}".as_bytes(), "\u{200b}\u{2060} ".as_bytes(), &[0xff, 0xfe]];
        let (m, f) = path.leaf().context("a path has a leaf")?;
        let secret = confab_protocol::text::rule_of(m, f).secret;
        for value in values {
            if secret && value == "\u{200b}\u{2060} ".as_bytes() {
                continue; // a password may be blank (§5.4): the request would go on to its handler
            }
            id += 1;
            raw.sender.send(frame_with(id, path, value)).await?;
            let e = expect_error(&mut raw, id, ErrorCode::InvalidArgument)
                .await
                .with_context(|| format!("{} = {value:?}", path.name()))?;
            ensure!(e.field == path.name(), "{} = {value:?}: the error names {:?}", path.name(), e.field);
        }
    }
    raw.send_frame(&client_frame(1_000_000, Request::Ping(v1::Ping { client_time_ms: 5 }))).await?;
    ensure!(matches!(response_to(&mut raw, 1_000_000).await?, response::Result::Pong(_)), "no Pong afterwards");
    Ok(())
}

/// §5.4, §4.1: a Hello whose client_name holds a NUL is refused before the handshake completes,
/// and a clean Hello on the same connection then succeeds.
pub(super) async fn hello_strings_are_checked(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    let Request::Hello(mut h) = hello(1, 0) else { bail!("hello() is a Hello") };
    h.client_name = "term\0inal".into();
    raw.send_frame(&client_frame(1, Request::Hello(h))).await?;
    let e = expect_error(&mut raw, 1, ErrorCode::InvalidArgument).await?;
    ensure!(e.field == "hello.client_name", "the error names {:?}", e.field);
    raw.send_frame(&client_frame(2, hello(1, 0))).await?;
    ensure!(matches!(response_to(&mut raw, 2).await?, response::Result::Welcome(_)), "no Welcome after the refusal");
    Ok(())
}

/// §5.4: a group title of spaces and a message of zero-width spaces are blank and refused.
pub(super) async fn blank_titles_and_messages_are_refused(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "blank").await?;
    let r = req(
        &a.client,
        Request::CreateConversation(v1::CreateConversation {
            kind: v1::ConversationKind::Group as i32,
            title: "   ".into(),
            ..Default::default()
        }),
    )
    .await;
    let e = r.err().context("a title of three spaces was accepted")?;
    ensure!(e.code() == Some(ErrorCode::InvalidArgument) && e.field() == Some("create_conversation.title"), "got {e}");
    let conv = super::common::group(&a, &[]).await?;
    let r = req(
        &a.client,
        Request::SendMessage(v1::SendMessage {
            conversation_id: conv,
            text: "\u{200b}\u{200b}".into(),
            client_msg_id: crate::util::msg_key("b1"),
            ..Default::default()
        }),
    )
    .await;
    let e = r.err().context("a message of U+200B was accepted")?;
    ensure!(e.code() == Some(ErrorCode::InvalidArgument) && e.field() == Some("send_message.text"), "got {e}");
    Ok(())
}

/// §18, §12.7: user search and channel discovery fold case by Unicode, identically on every
/// store: "Élodie", "élodie" and "ÉLODIE" find "Élodie …", and so do Ä, Σ and О in any case.
pub(super) async fn search_folds_case_beyond_ascii(t: Target) -> anyhow::Result<()> {
    use super::common::{account_with, fresh_name, registration};
    let tag: String = fresh_name("").chars().filter(char::is_ascii_digit).chain("0123".chars()).take(6).collect();
    let display = format!("Élodie Ärger Σοφία Олег {tag}");
    let r = v1::Register { display_name: Some(display.clone()), ..registration(&fresh_name("fold")) };
    let found = account_with(&t, r).await?;
    let a = account(&t, "foldA").await?;
    let queries = [
        format!("Élodie Ärger Σοφία Олег {tag}"),
        format!("élodie ärger σοφία олег {tag}"),
        format!("ÉLODIE ÄRGER ΣΟΦΊΑ ОЛЕГ {tag}"),
        format!("E\u{301}LODIE A\u{308}RGER ΣΟΦΊΑ ОЛЕГ {tag}"),
    ];
    for query in &queries {
        let r =
            call!(a.client, SearchUsers, v1::SearchUsers { query: query.clone(), limit: 100, ..Default::default() })?;
        ensure!(r.users.iter().any(|u| u.user_id == found.id), "SearchUsers {query:?} did not find {display:?}");
    }
    let title = format!("Ärger Σοφία Олег {tag}");
    let conv = super::common::channel(&a, &title).await?;
    for query in [title.clone(), title.to_lowercase(), title.to_uppercase()] {
        let r = call!(
            a.client,
            DiscoverChannels,
            v1::DiscoverChannels { query: query.clone(), limit: 100, ..Default::default() }
        )?;
        ensure!(
            r.conversations.iter().any(|c| c.conversation_id == conv),
            "DiscoverChannels {query:?} missed {title:?}"
        );
    }
    Ok(())
}
