//! Cases for message search (docs/protocol.md §23): folding (case, accents, compatibility forms),
//! words inside longer words, CJK and emoji, the query syntax, membership spans (left, removed
//! and re-added, channels joined late, non-members), edits and deletions, filters, orders and
//! pages, highlights, and a search seeing every write committed before it. Every search names
//! the case's own conversations or words drawn fresh for the run, so shared accounts and
//! earlier runs never show up in a case's hits.

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode};

use super::Target;
use super::common::*;
use crate::media::{octets, upload};

/// A search in `convs` (empty: everywhere the caller could see), newest first.
fn query(q: &str, convs: &[u64]) -> v1::SearchMessages {
    v1::SearchMessages { query: q.into(), conversation_ids: convs.to_vec(), limit: 100, ..Default::default() }
}

async fn search(a: &Account, r: v1::SearchMessages) -> anyhow::Result<v1::SearchMessagesResult> {
    let res = call!(a.client, SearchMessages, r.clone()).with_context(|| format!("searching {r:?}"))?;
    ensure!(res.index_lag.is_empty(), "a search sees every write committed before it (§23.6): {:?}", res.index_lag);
    Ok(res)
}

/// The texts of the hits, in order.
async fn texts(a: &Account, r: v1::SearchMessages) -> anyhow::Result<Vec<String>> {
    Ok(search(a, r).await?.hits.into_iter().filter_map(|h| h.message).map(|m| m.text).collect())
}

/// The highlighted parts of each hit's text.
fn highlighted(res: &v1::SearchMessagesResult) -> Vec<Vec<String>> {
    res.hits
        .iter()
        .map(|h| {
            let text = h.message.as_ref().map(|m| m.text.as_str()).unwrap_or_default();
            h.highlights
                .iter()
                .map(|r| {
                    text.get(r.start as usize..r.end as usize).unwrap_or("<not on a character boundary>").to_string()
                })
                .collect()
        })
        .collect()
}

/// §23.2: case and accents fold away both ways ("elodie" finds "Élodie" and "ÉLODIE", "Élodie"
/// finds "elodie"), a word is found inside a longer word or identifier, a two-character Chinese
/// word inside a sentence without spaces, an emoji, a two-letter substring; highlights point at
/// the original text.
pub(super) async fn search_folds_case_and_accents_and_finds_words_inside_words(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "sfA").await?;
    let b = account(&t, "sfB").await?;
    let conv = group(&a, &[b.id]).await?;
    let texts_sent = [
        "Rendez-vous avec Élodie demain",
        "ELODIE is here",
        "elodie without accent",
        "we should call parseConfigFile first",
        "我们明天讨论中文文档",
        "great job 👍🏽",
        "nothing to see",
    ];
    for (i, text) in texts_sent.iter().enumerate() {
        send(&a, conv, &format!("sf{i}"), text).await?;
    }
    let elodie = ["elodie without accent", "ELODIE is here", "Rendez-vous avec Élodie demain"];
    ensure!(texts(&b, query("elodie", &[conv])).await? == elodie, "case and accents fold away");
    ensure!(texts(&b, query("ÉLODIE", &[conv])).await? == elodie, "in the query too");
    let res = search(&b, query("Élodie", &[conv])).await?;
    ensure!(highlighted(&res) == [vec!["elodie"], vec!["ELODIE"], vec!["Élodie"]], "{:?}", highlighted(&res));
    let res = search(&b, query("config", &[conv])).await?;
    ensure!(highlighted(&res) == [vec!["Config"]], "a word inside an identifier: {:?}", highlighted(&res));
    let res = search(&b, query("中文", &[conv])).await?;
    ensure!(highlighted(&res) == [vec!["中文"]], "a CJK word inside a sentence: {:?}", highlighted(&res));
    ensure!(texts(&b, query("👍", &[conv])).await? == ["great job 👍🏽"], "an emoji");
    ensure!(texts(&b, query("vo", &[conv])).await? == ["Rendez-vous avec Élodie demain"], "two letters: a substring");
    ensure!(texts(&b, query("zzq", &[conv])).await?.is_empty(), "no hit is no hit");
    Ok(())
}

/// §23.2: "a phrase", -excluded, OR, words in any order; refusals: no word and no filter,
/// punctuation only, too long, too many words; §23.4: a cursor of another order, a limit over 100.
pub(super) async fn search_syntax_phrases_exclusions_and_or(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "ssA").await?;
    let conv = group(&a, &[]).await?;
    for (i, text) in ["release notes ready", "notes about the release", "release draft", "ship it"].iter().enumerate() {
        send(&a, conv, &format!("ss{i}"), text).await?;
    }
    ensure!(texts(&a, query("\"Release Notes\"", &[conv])).await? == ["release notes ready"]);
    ensure!(texts(&a, query("release notes", &[conv])).await? == ["notes about the release", "release notes ready"]);
    ensure!(texts(&a, query("release -draft", &[conv])).await? == ["notes about the release", "release notes ready"]);
    ensure!(texts(&a, query("draft OR ship", &[conv])).await? == ["ship it", "release draft"]);
    ensure!(texts(&a, query("-release", &[conv])).await? == ["ship it"], "exclusions alone, with a filter");
    for (q, what) in [("", "empty"), ("  !! ", "punctuation only"), ("-release", "exclusions only")] {
        let e = expect_code(call!(a.client, SearchMessages, query(q, &[])), ErrorCode::InvalidArgument)
            .with_context(|| format!("{what} with no filter"))?;
        ensure!(e.field == "search_messages.query", "{e:?}");
    }
    let e = expect_code(call!(a.client, SearchMessages, query(&"x".repeat(257), &[conv])), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "search_messages.query", "{e:?}");
    let many = (0..17).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    expect_code(call!(a.client, SearchMessages, query(&many, &[conv])), ErrorCode::InvalidArgument)?;
    let r = v1::SearchMessages { limit: 101, ..query("release", &[conv]) };
    ensure!(
        expect_code(call!(a.client, SearchMessages, r), ErrorCode::InvalidArgument)?.field == "search_messages.limit"
    );
    let r = v1::SearchMessages { cursor: "not a cursor".into(), ..query("release", &[conv]) };
    ensure!(
        expect_code(call!(a.client, SearchMessages, r), ErrorCode::InvalidArgument)?.field == "search_messages.cursor"
    );
    let first = search(&a, v1::SearchMessages { limit: 1, ..query("release", &[conv]) }).await?;
    ensure!(!first.next_cursor.is_empty(), "more hits follow");
    let r = v1::SearchMessages {
        cursor: first.next_cursor,
        order: v1::SearchOrder::Relevance as i32,
        ..query("release", &[conv])
    };
    expect_code(call!(a.client, SearchMessages, r), ErrorCode::InvalidArgument).context("a cursor of another order")?;
    Ok(())
}

/// §23.1: a member finds what was posted while they were a member: a removed and re-added member
/// both of their spans and nothing between, a member who left everything up to their departure
/// and nothing after, a late joiner of a channel nothing from before joining; a non-member finds
/// nothing, and naming a conversation they are not in is no error.
pub(super) async fn search_sees_only_membership_spans(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "spA").await?;
    let b = account(&t, "spB").await?;
    let c = account(&t, "spC").await?;
    let tag = fresh_name("sp");
    let conv = group(&a, &[b.id]).await?;
    send(&a, conv, "sp1", &format!("alpha {tag}")).await?;
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    send(&a, conv, "sp2", &format!("beta {tag}")).await?;
    call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] })?;
    send(&a, conv, "sp3", &format!("gamma {tag}")).await?;
    let both = [format!("gamma {tag}"), format!("alpha {tag}")];
    ensure!(texts(&b, query(&tag, &[])).await? == both, "both spans, nothing between");
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    send(&a, conv, "sp4", &format!("delta {tag}")).await?;
    ensure!(texts(&b, query(&tag, &[])).await? == both, "up to the departure, nothing after");
    ensure!(texts(&b, query(&tag, &[conv])).await? == both, "naming the conversation left");
    let all = [format!("delta {tag}"), format!("gamma {tag}"), format!("beta {tag}"), format!("alpha {tag}")];
    ensure!(texts(&a, query(&tag, &[])).await? == all, "the owner was there throughout");
    ensure!(texts(&c, query(&tag, &[])).await?.is_empty(), "a non-member finds nothing");
    ensure!(texts(&c, query(&tag, &[conv])).await?.is_empty(), "naming another's conversation is no error");

    let ch = channel(&a, "search").await?;
    send(&a, ch, "sp5", &format!("before {tag}")).await?;
    ensure!(texts(&c, query(&tag, &[ch])).await?.is_empty(), "a non-member finds nothing of a channel");
    call!(c.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    send(&a, ch, "sp6", &format!("after {tag}")).await?;
    ensure!(texts(&c, query(&tag, &[])).await? == [format!("after {tag}")], "from joining on");
    call!(c.client, LeaveConversation, v1::LeaveConversation { conversation_id: ch })?;
    Ok(())
}

/// §23.1/§21: an edited message is found by its new text only, and shows it; a deleted message
/// is found no more.
pub(super) async fn search_follows_edits_and_deletions(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "seA").await?;
    let conv = group(&a, &[]).await?;
    let (old, new) = (fresh_name("old"), fresh_name("new"));
    let m = send(&a, conv, "se1", &format!("first {old}")).await?;
    ensure!(texts(&a, query(&old, &[])).await? == [format!("first {old}")]);
    call!(
        a.client,
        EditMessage,
        v1::EditMessage { conversation_id: conv, message_id: m.message_id, text: format!("second {new}") }
    )?;
    ensure!(texts(&a, query(&old, &[])).await?.is_empty(), "the old text is found no more");
    let res = search(&a, query(&new, &[])).await?;
    let hit = res.hits.first().and_then(|h| h.message.clone()).context("the new text is found")?;
    ensure!(hit.message_id == m.message_id && hit.text == format!("second {new}") && hit.edited_at_ms > 0, "{hit:?}");
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: m.message_id })?;
    ensure!(texts(&a, query(&new, &[])).await?.is_empty(), "a deleted message is found no more");
    Ok(())
}

/// §23.3/§23.4: senders, dates and attachments narrow a search (filters alone are a search);
/// pages follow the cursor without repeats; relevance puts whole words first.
pub(super) async fn search_filters_orders_and_pages(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "sgA").await?;
    let b = account(&t, "sgB").await?;
    let conv = group(&a, &[b.id]).await?;
    let tag = fresh_name("sg");
    let mut sent = Vec::new();
    for i in 0..5 {
        let who = if i % 2 == 0 { &a } else { &b };
        sent.push(send(who, conv, &format!("sg{i}"), &format!("{tag} number {i}")).await?);
    }
    let media = upload(&a.client, b"search me", &octets()).await?;
    let attachment = v1::Attachment { media_id: media.media_id.clone(), ..Default::default() };
    call!(
        a.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment], ..message(conv, "sg5", &format!("{tag} file")) }
    )?;

    let from_b = v1::SearchMessages { sender_ids: vec![b.id], ..query(&tag, &[conv]) };
    ensure!(texts(&a, from_b).await? == [format!("{tag} number 3"), format!("{tag} number 1")], "a sender filter");
    let only_b = v1::SearchMessages { sender_ids: vec![b.id], ..query("", &[conv]) };
    ensure!(texts(&a, only_b).await?.len() == 2, "a filter alone is a search");
    let window = v1::SearchMessages {
        sent_after_ms: sent[1].created_at_ms,
        sent_before_ms: sent[3].created_at_ms + 1,
        ..query(&tag, &[conv])
    };
    let got = texts(&a, window).await?;
    ensure!(got.len() >= 3 && got.iter().all(|t| t.contains("number")), "a date range: {got:?}");
    let with = v1::SearchMessages { has_attachment: v1::AttachmentFilter::With as i32, ..query(&tag, &[conv]) };
    ensure!(texts(&a, with).await? == [format!("{tag} file")], "with attachments");
    let without = v1::SearchMessages { has_attachment: v1::AttachmentFilter::Without as i32, ..query(&tag, &[conv]) };
    ensure!(texts(&a, without).await?.len() == 5, "without attachments");

    let mut pages = Vec::new();
    let mut r = v1::SearchMessages { limit: 2, ..query(&tag, &[conv]) };
    loop {
        let page = search(&a, r.clone()).await?;
        ensure!(page.hits.len() <= 2);
        pages.extend(page.hits.into_iter().filter_map(|h| h.message).map(|m| m.message_id));
        if page.next_cursor.is_empty() {
            break;
        }
        ensure!(pages.len() < 10, "pages end");
        r.cursor = page.next_cursor;
    }
    let mut expected: Vec<u64> = sent.iter().map(|s| s.message_id).collect();
    expected.reverse();
    ensure!(pages.len() == 6 && pages[1..] == expected[..], "newest first, each once: {pages:?}");

    let word = fresh_name("rw");
    send(&a, conv, "sg6", &format!("{word} as a word")).await?;
    send(&a, conv, "sg7", &format!("inside x{word}y only")).await?;
    let newest = texts(&a, query(&word, &[conv])).await?;
    ensure!(newest[0].starts_with("inside"), "{newest:?}");
    let relevant =
        texts(&a, v1::SearchMessages { order: v1::SearchOrder::Relevance as i32, ..query(&word, &[conv]) }).await?;
    ensure!(relevant.len() == 2 && relevant[0].ends_with("as a word"), "whole words first: {relevant:?}");
    Ok(())
}

/// §23.6: a search right after a send finds it, on another connection of another member too.
pub(super) async fn search_sees_writes_committed_before_it(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "swA").await?;
    let b = account(&t, "swB").await?;
    let conv = group(&a, &[b.id]).await?;
    for i in 0..20 {
        let word = fresh_name("sw");
        send(&a, conv, &format!("sw{i}"), &format!("{word} now")).await?;
        ensure!(texts(&b, query(&word, &[])).await? == [format!("{word} now")], "round {i}");
    }
    Ok(())
}
