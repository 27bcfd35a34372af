//! Typed helpers for push notifications (docs/protocol.md §24).

use super::{Client, ClientError, unexpected};
use crate::v1::{self, client_frame::Request, response::Result as R};

macro_rules! call {
    ($self:ident, $req:ident, $r:expr, $res:ident, $name:literal) => {
        match $self.request(Request::$req($r)).await? {
            R::$res(x) => Ok(x),
            other => Err(unexpected($name, &other)),
        }
    };
}

impl Client {
    /// RegisterPushTarget (§24.1): registers this device's token or endpoint.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a token the provider cannot use; `FAILED_PRECONDITION` for a
    /// provider the server does not send through, or a device at its maximum; transport errors.
    pub async fn register_push_target(&self, r: v1::RegisterPushTarget) -> Result<v1::PushTarget, ClientError> {
        let res: v1::RegisterPushTargetResult =
            call!(self, RegisterPushTarget, r, RegisterPushTarget, "RegisterPushTargetResult")?;
        res.target.ok_or_else(|| ClientError::Protocol("RegisterPushTargetResult without a target".into()))
    }

    /// UnregisterPushTarget (§24.1).
    ///
    /// # Errors
    /// `NOT_FOUND` when the target is not the account's; transport errors.
    pub async fn unregister_push_target(&self, target_id: u64) -> Result<(), ClientError> {
        let r = v1::UnregisterPushTarget { target_id };
        let _: v1::UnregisterPushTargetResult =
            call!(self, UnregisterPushTarget, r, UnregisterPushTarget, "UnregisterPushTargetResult")?;
        Ok(())
    }

    /// ListPushTargets (§24.1): this device's targets, or the account's with `all_devices`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn list_push_targets(&self, all_devices: bool) -> Result<v1::ListPushTargetsResult, ClientError> {
        call!(self, ListPushTargets, v1::ListPushTargets { all_devices }, ListPushTargets, "ListPushTargetsResult")
    }

    /// ListPushDeliveries (§24.5): one page of the account's ledger, newest first.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a limit above 100; transport errors.
    pub async fn list_push_deliveries(
        &self,
        before_id: u64,
        limit: u32,
    ) -> Result<v1::ListPushDeliveriesResult, ClientError> {
        let r = v1::ListPushDeliveries { before_id, limit };
        call!(self, ListPushDeliveries, r, ListPushDeliveries, "ListPushDeliveriesResult")
    }

    /// GetPushSettings (§24.3).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn push_settings(&self) -> Result<v1::PushSettings, ClientError> {
        call!(self, GetPushSettings, v1::GetPushSettings {}, GetPushSettings, "PushSettings")
    }

    /// SetPushSettings (§24.3).
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for an unknown level; transport errors.
    pub async fn set_push_settings(&self, r: v1::SetPushSettings) -> Result<v1::PushSettings, ClientError> {
        call!(self, SetPushSettings, r, SetPushSettings, "PushSettings")
    }

    /// SetConversationPushSettings (§24.3).
    ///
    /// # Errors
    /// `NOT_FOUND` when the caller is not a member; `INVALID_ARGUMENT` for an unknown level or an
    /// `until_ms` in the past; transport errors.
    pub async fn set_conversation_push_settings(
        &self,
        r: v1::SetConversationPushSettings,
    ) -> Result<v1::ConversationPushSetting, ClientError> {
        call!(self, SetConversationPushSettings, r, SetConversationPushSettings, "ConversationPushSetting")
    }
}
