//! ICE restarts and dead transports for the test peer (docs/protocol.md §20.3.11, §20.3.12): the
//! ICE credentials the server uses on each connection, a publisher connection restarted with a
//! new `Publish` offer, and a subscriber connection that stops answering.

use confab_protocol::v1;
use rtc::peer_connection::configuration::RTCOfferOptions;
use webrtc::peer_connection::RTCSessionDescription;

use super::GroupPeer;
use crate::call;

/// The `a=ice-ufrag` of an SDP.
pub fn ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=ice-ufrag:")).map(str::to_string)
}

impl GroupPeer {
    /// The server's ICE username fragment on the subscriber connection (its latest offer).
    pub async fn subscriber_server_ufrag(&self) -> Option<String> {
        let pc = self.subscriber.lock().await.pc.clone();
        ufrag(&pc.remote_description().await?.sdp)
    }

    /// Restarts ICE on the publisher connection (an offer with new credentials, sent as
    /// `Publish`); returns the server's ufrag before and after.
    pub async fn restart_publisher_ice(&self) -> anyhow::Result<(String, String)> {
        let pc = self
            .publisher
            .lock()
            .await
            .as_ref()
            .map(|l| l.pc.clone())
            .ok_or_else(|| anyhow::anyhow!("not publishing"))?;
        let before = pc.remote_description().await.and_then(|d| ufrag(&d.sdp)).unwrap_or_default();
        let offer = pc.create_offer(Some(RTCOfferOptions { ice_restart: true })).await?;
        pc.set_local_description(offer.clone()).await?;
        let r = call!(
            self.client,
            Publish,
            v1::Publish { room_id: Default::default(), conversation_id: self.conversation_id, sdp_offer: offer.sdp }
        )?;
        let after = ufrag(&r.sdp_answer).unwrap_or_default();
        pc.set_remote_description(RTCSessionDescription::answer(r.sdp_answer)?).await?;
        Ok((before, after))
    }

    /// Closes the subscriber connection only, without telling the server: its media stops while
    /// signalling stays up (later offers go unanswered).
    pub async fn close_subscriber(&self) {
        let _ = self.subscriber.lock().await.pc.close().await;
    }
}
