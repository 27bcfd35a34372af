//! The layer each subscriber gets of each simulcast track (docs/protocol.md §20.3.10): what it
//! asked for with `SetSubscribedQuality`, lowered when its connection's bandwidth estimate or
//! loss says so (decided here every room tick, [`super::simulcast::Adapt`]); the switch itself
//! happens in the track's writer at a keyframe ([`super::simulcast::Forwarder`]).

use std::sync::atomic::Ordering;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::time::Instant;

use super::room::Room;
use super::simulcast::{Demand, OFF};
use crate::error::ServerError;
use crate::store::now_ms;

impl Room {
    /// §20.3.10: the highest level participant `session` wants of `track_id`.
    pub(super) fn set_quality(&mut self, session: &str, track_id: &str, level: u8) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let out = self.participants[i]
            .outs
            .get(track_id)
            .ok_or_else(|| ServerError::NotFound("no such track in this call".into()))?;
        if out.relay.kind != RtpCodecKind::Video {
            return Err(ServerError::invalid("set_subscribed_quality.track_id", "not a video track"));
        }
        out.choice.wanted.store(level, Ordering::Relaxed);
        self.adapt(i);
        Ok(())
    }

    /// Sets the target level of every video track participant `i` receives.
    pub(super) fn adapt(&mut self, i: usize) {
        let now_ms = now_ms().max(0) as u64;
        let p = &mut self.participants[i];
        let mut fixed = 0u64; // what tracks without layers to choose from take
        let mut sending = 0u64;
        let mut demands = Vec::new();
        let mut current = Vec::new();
        let mut choices = Vec::new();
        for out in p.outs.values() {
            let layers = out.relay.layers();
            let wanted = out.choice.wanted.load(Ordering::Relaxed);
            let target = out.choice.target.load(Ordering::Relaxed);
            let rate =
                |level: u8| layers.iter().find(|l| l.level == level).map_or(0, |l| l.bps.load(Ordering::Relaxed));
            if !out.relay.simulcast() || out.relay.kind != RtpCodecKind::Video {
                out.choice.target.store(wanted, Ordering::Relaxed);
                if wanted != OFF {
                    fixed += layers.iter().map(|l| l.bps.load(Ordering::Relaxed)).max().unwrap_or(0);
                }
                continue;
            }
            let mut active: Vec<(u8, u64)> = layers
                .iter()
                .filter(|l| now_ms.saturating_sub(l.heard_ms.load(Ordering::Relaxed)) < super::simulcast::LAYER_IDLE_MS)
                .map(|l| (l.level, l.bps.load(Ordering::Relaxed)))
                .collect();
            active.sort_unstable();
            sending += rate(out.choice.sent.load(Ordering::Relaxed));
            demands.push(Demand { wanted, layers: active });
            current.push(target);
            choices.push(out.choice.clone());
        }
        if demands.is_empty() {
            return;
        }
        let estimate = p.subscriber.link.estimate(now_ms).map(|e| e.saturating_sub(fixed));
        let loss = p.subscriber.link.loss(now_ms);
        let levels = p.adapt.decide(Instant::now().into_std(), estimate, loss, sending, &demands, &current);
        for (choice, level) in choices.iter().zip(levels) {
            choice.target.store(level, Ordering::Relaxed);
        }
    }
}
