//! Typed helpers for the accounts requests (docs/protocol.md §11).

use super::{Client, ClientError, unexpected};
use crate::v1::{self, client_frame::Request, response::Result as R};

impl Client {
    /// Register: creates an account and signs this connection in.
    pub async fn register(&self, r: v1::Register) -> Result<v1::AuthResult, ClientError> {
        match self.request(Request::Register(r)).await? {
            R::Register(a) => Ok(a),
            other => Err(unexpected("AuthResult", &other)),
        }
    }

    /// Login with a username or email and a password.
    pub async fn login(
        &self,
        identifier: &str,
        password: &str,
        device_name: &str,
    ) -> Result<v1::AuthResult, ClientError> {
        let r = v1::Login { identifier: identifier.into(), password: password.into(), device_name: device_name.into() };
        match self.request(Request::Login(r)).await? {
            R::Login(a) => Ok(a),
            other => Err(unexpected("AuthResult", &other)),
        }
    }

    /// Authenticate this connection with an access token.
    pub async fn authenticate(&self, access_token: &str) -> Result<v1::AuthInfo, ClientError> {
        match self.request(Request::Authenticate(v1::Authenticate { access_token: access_token.into() })).await? {
            R::Authenticate(a) => Ok(a),
            other => Err(unexpected("AuthInfo", &other)),
        }
    }

    /// Refresh: a new access token and a new refresh token; signs this connection in.
    pub async fn refresh(&self, refresh_token: &str) -> Result<v1::AuthResult, ClientError> {
        match self.request(Request::Refresh(v1::Refresh { refresh_token: refresh_token.into() })).await? {
            R::Refresh(a) => Ok(a),
            other => Err(unexpected("AuthResult", &other)),
        }
    }

    /// Logout: ends this connection's session.
    pub async fn logout(&self) -> Result<(), ClientError> {
        match self.request(Request::Logout(v1::Logout {})).await? {
            R::Logout(_) => Ok(()),
            other => Err(unexpected("LogoutResult", &other)),
        }
    }

    /// The signed-in account.
    pub async fn me(&self) -> Result<v1::Me, ClientError> {
        match self.request(Request::GetMe(v1::GetMe {})).await? {
            R::GetMe(m) => Ok(m),
            other => Err(unexpected("Me", &other)),
        }
    }

    /// The account's live sessions.
    pub async fn sessions(&self) -> Result<Vec<v1::Session>, ClientError> {
        match self.request(Request::ListSessions(v1::ListSessions {})).await? {
            R::ListSessions(l) => Ok(l.sessions),
            other => Err(unexpected("ListSessionsResult", &other)),
        }
    }
}
