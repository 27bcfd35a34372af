//! The generated store of the search scenario: a vocabulary of made-up words drawn with a Zipf
//! distribution, the needles the query shapes look for (a common word, a rare word, a phrase, a
//! two-character Chinese word) planted at known rates, Chinese sentences written without spaces,
//! code identifiers, and which conversation and sender each message belongs to. Everything follows
//! from one seed, so the generator knows the ground truth: which messages each needle is in.
//!
//! The made-up words alternate one consonant and one vowel ("kalomi"), so no needle can occur
//! inside them by chance: "deploy" and "quokka" hold letters and pairs such words never have, and
//! "release" two vowels in a row. A needle is found exactly where it was planted (or where two
//! plantings happen to touch, which the ground truth counts too, as the server would).

/// The common word: planted in about 7% of the Latin-script messages.
pub const COMMON: &str = "deploy";
/// The rare word: planted in [`RARE_MESSAGES`] messages, half of them in the probe's conversations.
pub const RARE: &str = "quokka";
/// The phrase's two words, each also planted alone.
pub const PHRASE: [&str; 2] = ["release", "candidate"];
/// The two-character Chinese word, one of the words Chinese sentences are made of.
pub const CJK_WORD: &str = "会议";
/// How many messages hold the rare word.
pub const RARE_MESSAGES: u64 = 10;

/// Bits of [`Planned::needles`].
pub const HAS_COMMON: u8 = 1;
pub const HAS_RARE: u8 = 2;
pub const HAS_PHRASE: u8 = 4;
pub const HAS_CJK: u8 = 8;

const COMMON_RATE: f64 = 0.07;
const PHRASE_RATE: f64 = 0.01;
const PHRASE_WORD_RATE: f64 = 0.02;
const CHINESE_RATE: f64 = 0.05;
const IDENTIFIER_RATE: f64 = 0.03;
const VOCABULARY: usize = 20_000;
const ZIPF_EXPONENT: f64 = 1.0;

const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
const VOWELS: &[u8] = b"aeiou";
/// The words Chinese sentences are made of ("meeting", "tomorrow", "project", …).
const CHINESE: &[&str] = &[
    "我们", "明天", "下午", "开会", "会议", "讨论", "项目", "进度", "中文", "文档", "需要", "翻译", "请", "大家",
    "准时", "参加", "关于", "报告", "已经", "完成", "测试", "版本", "发布", "问题", "修复", "周五", "之前", "提交",
    "代码", "审查",
];
const IDENTIFIERS: &[&str] = &[
    "parseConfigFile",
    "loadUserProfile",
    "handleRequestError",
    "flushWriteBuffer",
    "retryBackoffMillis",
    "openDatabasePool",
    "renderMessageList",
    "validateTokenClaims",
];

/// SplitMix64: a small deterministic generator (the same corpus for the same seed).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// The sizes a store is generated with.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub conversations: usize,
    pub messages: u64,
    pub members_per_conversation: usize,
    pub senders: usize,
    /// The probe user is a member of this many conversations, spread evenly.
    pub probe_conversations: usize,
    pub seed: u64,
}

/// One message to send: where, by whom, and which needles its text holds.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    pub conversation: u32,
    pub sender: u32,
    pub needles: u8,
}

/// The generated store: vocabulary, memberships and every message's plan.
#[derive(Debug)]
pub struct Corpus {
    pub shape: Shape,
    words: Vec<String>,
    /// The Zipf distribution's cumulative weights, one per word (rank order).
    cumulative: Vec<f64>,
    /// Each conversation's members, by sender number.
    pub members: Vec<Vec<u32>>,
    /// Message `i` is `plan[i]`; its text is [`Corpus::text`]`(i)`.
    pub plan: Vec<Planned>,
    rare: Vec<u64>,
}

fn made_up_word(r: &mut Rng) -> String {
    let syllables = 2 + r.below(3);
    let mut w = String::with_capacity(syllables * 2);
    for _ in 0..syllables {
        w.push(char::from(CONSONANTS[r.below(CONSONANTS.len())]));
        w.push(char::from(VOWELS[r.below(VOWELS.len())]));
    }
    w
}

/// Which needles `text` holds, as the server would find them (case-insensitive substrings; the
/// texts have no punctuation, so folding changes nothing else).
pub fn needles_in(text: &str) -> u8 {
    let lower = text.to_lowercase();
    let phrase = format!("{} {}", PHRASE[0], PHRASE[1]);
    let mut n = 0;
    for (needle, bit) in [(COMMON, HAS_COMMON), (RARE, HAS_RARE), (phrase.as_str(), HAS_PHRASE), (CJK_WORD, HAS_CJK)] {
        if lower.contains(needle) {
            n |= bit;
        }
    }
    n
}

impl Corpus {
    /// Generates the store for `shape` (vocabulary, members, and every message's plan).
    pub fn new(shape: Shape) -> anyhow::Result<Self> {
        anyhow::ensure!(shape.conversations > 0 && shape.messages > 0, "at least one conversation and one message");
        anyhow::ensure!(
            (1..=shape.senders).contains(&shape.members_per_conversation),
            "--members-per-conversation must be 1..=--senders"
        );
        anyhow::ensure!(
            (1..=shape.conversations).contains(&shape.probe_conversations),
            "--probe-conversations must be 1..=--conversations"
        );
        let mut r = Rng::new(shape.seed ^ 0x5EED_0FC0_FFEE);
        let mut seen = std::collections::HashSet::new();
        let mut words = Vec::with_capacity(VOCABULARY);
        while words.len() < VOCABULARY {
            let w = made_up_word(&mut r);
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut total = 0.0;
        let cumulative = (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(ZIPF_EXPONENT);
                total
            })
            .collect();
        let members = (0..shape.conversations)
            .map(|_| {
                let mut m: Vec<u32> = Vec::with_capacity(shape.members_per_conversation);
                while m.len() < shape.members_per_conversation {
                    let s = r.below(shape.senders) as u32;
                    if !m.contains(&s) {
                        m.push(s);
                    }
                }
                m
            })
            .collect();
        let mut c = Self { shape, words, cumulative, members, plan: Vec::new(), rare: Vec::new() };
        c.rare = c.rare_messages();
        c.plan = (0..shape.messages).map(|i| c.planned(i)).collect();
        Ok(c)
    }

    fn stride(&self) -> usize {
        self.shape.conversations / self.shape.probe_conversations
    }

    /// Whether the probe user is a member of conversation `c` (every stride-th, from 0).
    pub fn probe_is_member(&self, c: usize) -> bool {
        c.is_multiple_of(self.stride()) && c / self.stride() < self.shape.probe_conversations
    }

    /// The messages holding the rare word: spread over the run, every other one in a probe
    /// conversation (one at the same position of a conversation the probe is not in).
    fn rare_messages(&self) -> Vec<u64> {
        let convs = self.shape.conversations as u64;
        let rounds = self.shape.messages / convs;
        let mut out = Vec::new();
        for k in 0..RARE_MESSAGES {
            let round = rounds * k / RARE_MESSAGES;
            let conv = if k % 2 == 0 {
                (k / 2 * self.stride() as u64) % (self.shape.probe_conversations * self.stride()) as u64
            } else {
                (0..convs).find(|&c| !self.probe_is_member(c as usize)).unwrap_or(0)
            };
            let i = round * convs + conv;
            if i < self.shape.messages && !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    fn planned(&self, i: u64) -> Planned {
        let convs = self.shape.conversations as u64;
        let conversation = (i % convs) as usize;
        let round = (i / convs) as usize;
        let m = &self.members[conversation];
        Planned { conversation: conversation as u32, sender: m[round % m.len()], needles: needles_in(&self.text(i)) }
    }

    fn zipf_word(&self, r: &mut Rng) -> &str {
        let x = r.unit() * self.cumulative[self.cumulative.len() - 1];
        let i = self.cumulative.partition_point(|&c| c < x).min(self.words.len() - 1);
        &self.words[i]
    }

    /// The text of message `i` (the same every time for one seed).
    pub fn text(&self, i: u64) -> String {
        let mut r = Rng::new(self.shape.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i);
        let rare = self.rare.contains(&i);
        if !rare && r.chance(CHINESE_RATE) {
            return (0..4 + r.below(7)).map(|_| CHINESE[r.below(CHINESE.len())]).collect();
        }
        let mut words: Vec<&str> = (0..4 + r.below(12)).map(|_| self.zipf_word(&mut r)).collect();
        let mut plant = |r: &mut Rng, w: &'static str| {
            let at = r.below(words.len() + 1);
            words.insert(at, w);
        };
        if r.chance(COMMON_RATE) {
            plant(&mut r, COMMON);
        }
        if r.chance(PHRASE_RATE) {
            plant(&mut r, "release candidate");
        } else {
            for w in PHRASE {
                if r.chance(PHRASE_WORD_RATE) {
                    plant(&mut r, w);
                }
            }
        }
        if r.chance(IDENTIFIER_RATE) {
            let id = IDENTIFIERS[r.below(IDENTIFIERS.len())];
            plant(&mut r, id);
        }
        if rare {
            plant(&mut r, RARE);
        }
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Corpus {
        let shape = Shape {
            conversations: 100,
            messages: 20_000,
            members_per_conversation: 4,
            senders: 20,
            probe_conversations: 10,
            seed: 7,
        };
        Corpus::new(shape).expect("corpus")
    }

    #[test]
    fn the_same_seed_makes_the_same_store() {
        let (a, b) = (small(), small());
        assert_eq!(a.text(123), b.text(123));
        assert_eq!(a.members, b.members);
        assert_ne!(a.text(123), a.text(124));
    }

    #[test]
    fn needles_are_planted_at_their_rates() {
        let c = small();
        let count = |bit: u8| c.plan.iter().filter(|p| p.needles & bit != 0).count() as f64;
        let n = c.plan.len() as f64;
        assert!((0.05..0.09).contains(&(count(HAS_COMMON) / n)), "common {}", count(HAS_COMMON) / n);
        assert!((0.005..0.02).contains(&(count(HAS_PHRASE) / n)), "phrase {}", count(HAS_PHRASE) / n);
        assert!((0.003..0.03).contains(&(count(HAS_CJK) / n)), "cjk {}", count(HAS_CJK) / n);
        assert_eq!(count(HAS_RARE) as u64, RARE_MESSAGES);
        let in_probe =
            c.plan.iter().filter(|p| p.needles & HAS_RARE != 0 && c.probe_is_member(p.conversation as usize));
        assert_eq!(in_probe.count() as u64, RARE_MESSAGES / 2);
    }

    #[test]
    fn the_probe_is_in_its_share_of_conversations_and_senders_take_turns() {
        let c = small();
        assert_eq!((0..100).filter(|&i| c.probe_is_member(i)).count(), 10);
        for m in &c.members {
            let mut d = m.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 4);
        }
        let p0 = c.plan[0];
        let p100 = c.plan[100];
        assert_eq!((p0.conversation, p100.conversation), (0, 0));
        assert_eq!((p0.sender, p100.sender), (c.members[0][0], c.members[0][1]));
    }

    #[test]
    fn made_up_words_never_hold_a_needle() {
        let c = small();
        assert!(c.words.iter().all(|w| needles_in(w) == 0 && !w.contains(PHRASE[0]) && !w.contains(PHRASE[1])));
        assert_eq!(needles_in("a Deploy b"), HAS_COMMON);
        assert_eq!(needles_in("我们开会议程"), HAS_CJK);
        assert_eq!(needles_in("a release candidate"), HAS_PHRASE);
    }
}
