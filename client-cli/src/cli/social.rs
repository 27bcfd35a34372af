//! `search-users`, `contacts`, `block`, `blocked`.

use anyhow::bail;
use confab_protocol::client::Client;
use confab_protocol::v1;

use super::output::{user_json, user_line};
use super::{Command, ContactAction, resolve};

pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::SearchUsers { query, json } => {
            let req = v1::SearchUsers { query, page_token: String::new(), limit: 100 };
            let r = call!(client, SearchUsers, req);
            print_users(&r.users, json);
        }
        Command::Contacts { action: None, json } => {
            let r = call!(client, ListContacts, v1::ListContacts {});
            print_users(&r.users, json);
        }
        Command::Contacts { action: Some(ContactAction::Add { user }), .. } => {
            let u = resolve::user(client, &user).await?;
            call!(client, AddContact, v1::AddContact { user_id: u.user_id });
            println!("added {} to your contacts", u.username);
        }
        Command::Contacts { action: Some(ContactAction::Remove { user }), .. } => {
            let u = resolve::user(client, &user).await?;
            call!(client, RemoveContact, v1::RemoveContact { user_id: u.user_id });
            println!("removed {} from your contacts", u.username);
        }
        Command::Block { user, undo } => {
            let u = resolve::user(client, &user).await?;
            if undo {
                call!(client, Unblock, v1::Unblock { user_id: u.user_id });
                println!("unblocked {}", u.username);
            } else {
                call!(client, Block, v1::Block { user_id: u.user_id });
                println!("blocked {}", u.username);
            }
        }
        Command::Blocked { json } => {
            let r = call!(client, ListBlocked, v1::ListBlocked {});
            print_users(&r.users, json);
        }
        other => bail!("not a social command: {other:?}"),
    }
    Ok(())
}

fn print_users(users: &[v1::UserProfile], json: bool) {
    for u in users {
        if json {
            println!("{}", user_json(u));
        } else {
            println!("{}", user_line(u));
        }
    }
}
