//! Cases for what a reaction is (docs/protocol.md §13.5): exactly one emoji of Unicode's emoji
//! data or a known :shortcode:, each emoji counted once whatever its spelling.

use anyhow::{Context, ensure};
use confab_protocol::client::ClientError;
use confab_protocol::v1::{self, ErrorCode, conversation_event::Body};

use super::Target;
use super::common::*;

/// React (`add`) or Unreact with `emoji` as `u`; the seq answered.
async fn react(u: &Account, conv: u64, message_id: u64, emoji: &str, add: bool) -> Result<u64, ClientError> {
    let emoji = emoji.to_string();
    if add {
        call!(u.client, React, v1::React { conversation_id: conv, message_id, emoji }).map(|r| r.seq)
    } else {
        call!(u.client, Unreact, v1::Unreact { conversation_id: conv, message_id, emoji }).map(|r| r.seq)
    }
}

/// The (emoji, count) pairs of message `id` in `a`'s history.
async fn counts(a: &Account, conv: u64, id: u64) -> anyhow::Result<Vec<(String, u32)>> {
    let m = history(a, conv).await?.into_iter().find(|m| m.message_id == id).context("message not in history")?;
    Ok(m.reactions.into_iter().map(|r| (r.emoji, r.count)).collect())
}

/// §13.5: `:tada:` and 🎉 are one reaction (stored, announced and counted as 🎉); keycaps such as
/// `1️⃣` are emoji, with or without U+FE0F; either spelling removes the reaction; invisible and
/// bidi characters, a lone skin tone or regional indicator and unknown shortcodes are
/// INVALID_ARGUMENT naming the field.
pub(super) async fn one_emoji_counts_once_whatever_its_spelling(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfemA").await?;
    let b = account(&t, "cfemB").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "em1", "react to me").await?.message_id;

    react(&b, conv, m, ":tada:", true).await?;
    let e = entry(&mut a.events, conv, |x| matches!(x, Body::ReactionAdded(_))).await?;
    ensure!(matches!(&e.body, Some(Body::ReactionAdded(r)) if r.emoji == "🎉"), "the shortcode was announced as {e:?}");
    let head = react(&a, conv, m, "🎉", true).await?;
    ensure!(react(&a, conv, m, ":tada:", true).await? == head, "a second spelling wrote another reaction");
    react(&a, conv, m, "1\u{FE0F}\u{20E3}", true).await.context("1️⃣")?;
    react(&b, conv, m, "1\u{20E3}", true).await.context("1⃣ without U+FE0F")?;
    react(&a, conv, m, "#\u{20E3}", true).await.context("#⃣ without U+FE0F")?;
    let got = counts(&a, conv, m).await?;
    let want = [("🎉", 2), ("1\u{FE0F}\u{20E3}", 2), ("#\u{FE0F}\u{20E3}", 1)];
    ensure!(got.len() == want.len(), "expected {want:?}, got {got:?}");
    for (emoji, n) in want {
        ensure!(got.contains(&(emoji.to_string(), n)), "expected {emoji} counted {n}: {got:?}");
    }

    react(&a, conv, m, ":tada:", false).await?;
    react(&b, conv, m, "🎉", false).await?;
    react(&b, conv, m, ":one:", false).await?;
    let got = counts(&a, conv, m).await?;
    ensure!(!got.iter().any(|(e, _)| e == "🎉"), "either spelling removes the reaction: {got:?}");
    ensure!(got.contains(&("1\u{FE0F}\u{20E3}".to_string(), 1)), "{got:?}");

    for bad in ["\u{200B}", "\u{200D}", "\u{202E}", "\u{1F3FB}", "\u{1F1E6}", "\u{202E}👍", ":no_such_emoji:", "x"] {
        for (add, field) in [(true, "react.emoji"), (false, "unreact.emoji")] {
            let e = expect_code(react(&b, conv, m, bad, add).await, ErrorCode::InvalidArgument)
                .with_context(|| format!("{bad:?}"))?;
            ensure!(e.field == field, "{bad:?}: {e:?}");
        }
    }
    Ok(())
}
