//! Names on the command line: users by username (or `#ID`, or a number no username spells),
//! conversations by id, title or `@username` (the DM with that user), channels by id or title.

use anyhow::{Context, bail};
use confab_protocol::client::{Client, unexpected};
use confab_protocol::v1::{self, client_frame::Request, response::Result as R};

use super::output::{Names, conversation_name};
use crate::net::fetch_users;

/// A user by username (exact, case-insensitive; `@` before it allowed) or `#ID`; a bare number
/// is a username when one is spelled so (usernames may be all digits), else an id.
pub async fn user(client: &Client, spec: &str) -> anyhow::Result<v1::UserProfile> {
    if let Some(id) = spec.strip_prefix('#').and_then(|s| s.parse::<u64>().ok()) {
        return user_by_id(client, id).await;
    }
    let name = spec.strip_prefix('@').unwrap_or(spec);
    let req = v1::SearchUsers { query: name.to_string(), page_token: String::new(), limit: 100 };
    let found = match client.request(Request::SearchUsers(req)).await.with_context(|| format!("looking up {name}"))? {
        R::SearchUsers(r) => r.users,
        other => return Err(unexpected("SearchUsersResult", &other).into()),
    };
    match (found.into_iter().find(|u| u.username.eq_ignore_ascii_case(name)), spec.parse::<u64>()) {
        (Some(u), _) => Ok(u),
        (None, Ok(id)) => user_by_id(client, id).await,
        (None, Err(_)) => bail!("no user named {name:?}"),
    }
}

async fn user_by_id(client: &Client, user_id: u64) -> anyhow::Result<v1::UserProfile> {
    match client.request(Request::GetUser(v1::GetUser { user_id })).await? {
        R::GetUser(u) => Ok(u),
        other => Err(unexpected("UserProfile", &other).into()),
    }
}

/// Every conversation of the account, most recent activity first.
pub async fn all_conversations(client: &Client) -> anyhow::Result<Vec<v1::Conversation>> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = v1::ListConversations { page_token: page_token.clone(), limit: 100 };
        let page = match client.request(Request::ListConversations(req)).await? {
            R::ListConversations(p) => p,
            other => return Err(unexpected("ListConversationsResult", &other).into()),
        };
        out.extend(page.conversations);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}

/// The account's conversations with the names needed to show them.
pub async fn conversations_with_names(client: &Client) -> anyhow::Result<(Vec<v1::Conversation>, Names)> {
    let convs = all_conversations(client).await?;
    let senders = convs.iter().filter_map(|c| c.last_message.as_ref().map(|m| m.sender_id)).collect();
    let names = names_for(client, &convs, senders).await?;
    Ok((convs, names))
}

/// Names for `convs` (titles, and DM peers) and for the users `ids`.
pub async fn names_for(client: &Client, convs: &[v1::Conversation], mut ids: Vec<u64>) -> anyhow::Result<Names> {
    ids.extend(convs.iter().map(|c| c.peer_user_id).filter(|id| *id != 0));
    ids.sort_unstable();
    ids.dedup();
    let mut names = Names::default();
    names.add_users(&fetch_users(client, ids).await?);
    for c in convs {
        names.add_conversation(c);
    }
    Ok(names)
}

/// A conversation by id, title, or `@username` for a DM.
pub async fn conversation(client: &Client, spec: &str) -> anyhow::Result<(v1::Conversation, Names)> {
    if let Ok(id) = spec.trim_start_matches('#').parse::<u64>() {
        let c = match client.request(Request::GetConversation(v1::GetConversation { conversation_id: id })).await? {
            R::GetConversation(c) => c,
            other => return Err(unexpected("Conversation", &other).into()),
        };
        let mut names = Names::default();
        if c.peer_user_id != 0 {
            names.add_users(&fetch_users(client, vec![c.peer_user_id]).await?);
        }
        names.add_conversation(&c);
        return Ok((c, names));
    }
    let (convs, names) = conversations_with_names(client).await?;
    let matches: Vec<&v1::Conversation> = convs
        .iter()
        .filter(|c| {
            let name = conversation_name(c, &names);
            name.eq_ignore_ascii_case(spec) || name.strip_prefix('@').is_some_and(|n| n.eq_ignore_ascii_case(spec))
        })
        .collect();
    match matches.as_slice() {
        [] => bail!("no conversation named {spec:?} (see `confab conversations`)"),
        [one] => Ok(((*one).clone(), names)),
        many => {
            let ids: Vec<String> = many.iter().map(|c| c.conversation_id.to_string()).collect();
            bail!("{spec:?} names several conversations ({}): use an id", ids.join(", "))
        }
    }
}

/// A channel by id or title (exact, case-insensitive).
pub async fn channel(client: &Client, spec: &str) -> anyhow::Result<u64> {
    if let Ok(id) = spec.trim_start_matches('#').parse::<u64>() {
        return Ok(id);
    }
    let req = v1::DiscoverChannels { query: spec.to_string(), after_conversation_id: 0, limit: 100 };
    let found = match client.request(Request::DiscoverChannels(req)).await? {
        R::DiscoverChannels(r) => r.conversations,
        other => return Err(unexpected("DiscoverChannelsResult", &other).into()),
    };
    found
        .into_iter()
        .find(|c| c.title.eq_ignore_ascii_case(spec))
        .map(|c| c.conversation_id)
        .with_context(|| format!("no channel named {spec:?}"))
}
