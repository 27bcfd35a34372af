//! A small deterministic scenario toolkit for the sync property tests: a seeded generator and
//! the bookkeeping of the messages a run sent.

/// xorshift64*: small, deterministic, good enough to shuffle a scenario.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A message a scenario sent.
#[derive(Debug)]
pub struct Sent {
    pub conv: u64,
    pub message_id: u64,
    pub sender: u64,
    pub deleted: bool,
}

/// One of `user`'s messages that is not deleted, at random.
pub fn pick_live(sent: &[Sent], user: u64, rng: &mut Rng) -> Option<usize> {
    let mine: Vec<usize> = (0..sent.len()).filter(|k| sent[*k].sender == user && !sent[*k].deleted).collect();
    (!mine.is_empty()).then(|| mine[rng.below(mine.len())])
}
