//! Cases for server administration's refusals and the audit log's reads (docs/protocol.md §26.1,
//! §28.4). Conformance runs as ordinary accounts, so it checks what every account sees: each
//! administrator request, found by walking the schema (a new one cannot escape), answers one and
//! the same `NOT_FOUND` and changes nothing; and an account reads its own security events.

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_protocol::frames::client_frame;
use confab_protocol::schema::{CLIENT_FRAME, FieldKind, MESSAGES};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, response};
use prost::encoding::{WireType, encode_key, encode_varint, string, uint64};

use super::common::*;
use super::{Target, expect_error, response_to, signed_in_raw};

/// The request fields of ClientFrame whose message is an administrator's (`confab.v1.Admin*`),
/// as (field number, request name, message schema index).
fn admin_requests() -> Vec<(u32, &'static str, usize)> {
    MESSAGES[CLIENT_FRAME]
        .fields
        .iter()
        .filter_map(|f| match f.kind {
            FieldKind::Message(m) if MESSAGES[m].full_name.starts_with("confab.v1.Admin") => {
                Some((f.number, f.name, m))
            }
            _ => None,
        })
        .collect()
}

/// A frame carrying request `number` whose message names real objects: every `user_id` field is
/// `user`, `conversation_id` is `conv`, `message_id` is `message`, any other number is 1, and
/// every string is `"x"` (so a request that would act acts on them, were it allowed).
fn aimed_frame(request_id: u64, number: u32, schema: usize, user: u64, conv: u64, message: u64) -> Bytes {
    let mut body = Vec::new();
    for f in MESSAGES[schema].fields {
        match f.kind {
            FieldKind::Scalar => {
                let v = match f.name {
                    "user_id" => user,
                    "conversation_id" => conv,
                    "message_id" => message,
                    _ => 1,
                };
                if f.repeated {
                    // Packed repeated scalars (enums): one element.
                    encode_key(f.number, WireType::LengthDelimited, &mut body);
                    encode_varint(1, &mut body);
                    encode_varint(v, &mut body);
                } else {
                    uint64::encode(f.number, &v, &mut body);
                }
            }
            FieldKind::String => string::encode(f.number, &"x".to_string(), &mut body),
            FieldKind::Bytes | FieldKind::Message(_) => {}
        }
    }
    let mut frame = Vec::new();
    uint64::encode(1, &request_id, &mut frame);
    encode_key(number, WireType::LengthDelimited, &mut frame);
    encode_varint(body.len() as u64, &mut frame);
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// §26.1: every administrator request, empty and aimed at another account's real user,
/// conversation and message, answers an ordinary account the same `NOT_FOUND` with the same
/// message, and nothing happens: the other account stays signed in, its conversation and message
/// stay.
pub(super) async fn every_admin_request_is_not_found_for_others(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "admin-probe").await?;
    let b = account(&t, "admin-victim").await?;
    let conv = group(&b, &[]).await?;
    let sent = send(&b, conv, &fresh_name("probe"), "still here").await?;
    let requests = admin_requests();
    ensure!(requests.len() >= 12, "the schema lists only {} administrator requests", requests.len());
    let mut raw = signed_in_raw(&t, &a.auth.access_token).await?;
    let mut id = 10;
    let mut answer: Option<String> = None;
    for (number, name, schema) in &requests {
        for aimed in [false, true] {
            id += 1;
            let frame = if aimed {
                aimed_frame(id, *number, *schema, b.id, conv, sent.message_id)
            } else {
                let mut f = Vec::new();
                uint64::encode(1, &id, &mut f);
                encode_key(*number, WireType::LengthDelimited, &mut f);
                encode_varint(0, &mut f);
                Bytes::from(f)
            };
            raw.sender.send(frame).await?;
            let e = expect_error(&mut raw, id, ErrorCode::NotFound)
                .await
                .with_context(|| format!("{name}, aimed {aimed}"))?;
            ensure!(e.field.is_empty() && e.retry_after_ms == 0, "{name}: {e}");
            match &answer {
                Some(m) => ensure!(*m == e.message, "{name} answered {:?}, another {m:?}", e.message),
                None => answer = Some(e.message),
            }
        }
    }
    // Nothing happened to b, its conversation or its message.
    let me = b.client.me().await.context("b was signed out")?;
    ensure!(me.user_id == b.id, "{me:?}");
    let h = history(&b, conv).await?;
    ensure!(
        h.iter().any(|m| m.message_id == sent.message_id && m.text == "still here" && !m.deleted),
        "the message changed: {h:?}"
    );
    ensure!(members(&b, conv).await?.iter().any(|m| m.user_id == b.id), "b left its group");
    raw.send_frame(&client_frame(id + 1, Request::Ping(v1::Ping { client_time_ms: 1 }))).await?;
    ensure!(matches!(response_to(&mut raw, id + 1).await?, response::Result::Pong(_)), "no Pong afterwards");
    Ok(())
}

/// §28.4: an account reads its own sign-ins and failed sign-ins, newest first, and not
/// another account's failed sign-in made at the same time.
pub(super) async fn own_security_events_are_listed(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "secev").await?;
    let other = account(&t, "secev-other").await?;
    let (c, _e) = t.client().await?;
    for name in [&a.name, &other.name] {
        // A failed sign-in on each: only a's may be listed to a.
        let wrong = c.login(name, "not the password at all", "conformance").await;
        ensure!(code(wrong.map(|_| response::Result::Pong(v1::Pong::default()))) == Some(ErrorCode::Unauthenticated));
    }
    let second = second_device(&t, &a, "second").await?;
    let r = req(&a.client, Request::ListSecurityEvents(v1::ListSecurityEvents { before_seq: 0, limit: 0 })).await?;
    let response::Result::ListSecurityEvents(page) = r else { anyhow::bail!("got {r:?}") };
    let actions: Vec<v1::AuditAction> = page.events.iter().map(|e| e.action()).collect();
    ensure!(
        actions == [v1::AuditAction::SignIn, v1::AuditAction::SignInFailed, v1::AuditAction::SignIn],
        "events {actions:?}"
    );
    ensure!(page.events.iter().all(|e| e.target_user_id == a.id), "{:?}", page.events);
    ensure!(page.events[0].target == second.auth.session_id, "the newest sign-in names {:?}", page.events[0].target);
    ensure!(page.events.windows(2).all(|w| w[0].seq > w[1].seq), "not newest first");
    // Paging: below the newest, one at a time.
    let r = req(
        &a.client,
        Request::ListSecurityEvents(v1::ListSecurityEvents { before_seq: page.events[0].seq, limit: 1 }),
    )
    .await?;
    let response::Result::ListSecurityEvents(next) = r else { anyhow::bail!("got {r:?}") };
    ensure!(next.events.len() == 1 && next.events[0].seq == page.events[1].seq && next.has_more, "{next:?}");
    Ok(())
}
