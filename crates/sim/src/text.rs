//! How the simulated model reads and writes text: a word-level tokenizer (one whitespace-separated word is one
//! token, as infer-doctor's own prompts assume without a tokenizer), prefix-block hashes, and generated words.

/// Turns text into token ids. The binary can plug in a real HF tokenizer; the default counts words.
pub trait Tokenize: Send + Sync {
    fn encode(&self, text: &str) -> Vec<u32>;
}

/// One token per whitespace-separated word; ids from a hash of the word, so equal words are equal tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordTokenizer;

impl Tokenize for WordTokenizer {
    fn encode(&self, text: &str) -> Vec<u32> {
        text.split_whitespace()
            .map(|w| (fnv1a(FNV_OFFSET, w.as_bytes()) % VOCAB) as u32)
            .collect()
    }
}

const VOCAB: u64 = 128_000;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The next link of a prefix-cache hash chain: a block's key depends on everything before it.
pub fn chain_hash(parent: u64, words: &[u64]) -> u64 {
    words.iter().fold(parent, |h, w| fnv1a(h, &w.to_le_bytes()))
}

/// Chained hashes of each full block of real tokens, as vLLM's prefix cache keys them: a block matches only
/// if every block before it matched too.
pub fn block_hashes(tokens: &[u32], block_size: u32) -> Vec<u64> {
    let mut parent = FNV_OFFSET;
    tokens
        .chunks_exact(block_size.max(1) as usize)
        .map(|block| {
            let ids: Vec<u64> = block.iter().map(|&t| u64::from(t)).collect();
            parent = chain_hash(parent, &ids);
            parent
        })
        .collect()
}

/// Block hashes for a synthetic prompt of `len` tokens whose first `shared` tokens are common to its group:
/// the same chain as [`block_hashes`], with a block's owner (group or request) standing in for its tokens.
pub fn synthetic_block_hashes(
    group: u64,
    unique: u64,
    len: u32,
    shared: u32,
    block_size: u32,
) -> Vec<u64> {
    let mut parent = FNV_OFFSET;
    (0..len / block_size.max(1))
        .map(|b| {
            let start = b * block_size;
            let owner = if start + block_size <= shared {
                group
            } else {
                unique | 1 << 63
            };
            parent = chain_hash(parent, &[owner, u64::from(b)]);
            parent
        })
        .collect()
}

const WORDS: [&str; 16] = [
    " the", " server", " queue", " token", " cache", " batch", " model", " step", " request",
    " memory", " prompt", " stream", " decode", " prefill", " block", " latency",
];

/// A logprob that leaves no doubt, and the runner-up's far below it.
const CLEAR_LOGPROB: f64 = -0.05;
const RUNNER_UP_LOGPROB: f64 = -3.0;
/// Two candidates a rounding difference can swap: ln(0.5) and just below it.
const TIED_LOGPROBS: (f64, f64) = (-0.693, -0.703);

/// One generated token with what a server reports beside it when asked for logprobs.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub word: &'static str,
    pub logprob: f64,
    /// The two most likely candidates at this position, most likely first.
    pub top: [(&'static str, f64); 2],
}

/// What one request generates at temperature 0: a function of its prompt alone, as a deterministic model's
/// greedy output is, unless the model has a near tie at `near_tie` (a 1-based token index) and the batch that
/// computes that token flips it. Then that token is the runner-up and everything after it follows from it.
#[derive(Clone, Debug)]
pub struct Generation {
    key: u64,
    near_tie: Option<u32>,
    flipped: bool,
}

impl Generation {
    pub fn new(prompt: &[u32], near_tie: Option<u32>) -> Generation {
        let ids: Vec<u64> = prompt.iter().map(|&t| u64::from(t)).collect();
        Generation {
            key: chain_hash(FNV_OFFSET, &ids),
            near_tie,
            flipped: false,
        }
    }

    fn word(key: u64, index: u32, offset: usize) -> &'static str {
        WORDS[((key % WORDS.len() as u64) as usize * 7 + index as usize + offset) % WORDS.len()]
    }

    /// The token at `index` (1-based); `flips` says whether the batch computing it swaps a near tie.
    pub fn next(&mut self, index: u32, flips: bool) -> Generated {
        let key = if self.flipped {
            chain_hash(self.key, &[u64::from(index)])
        } else {
            self.key
        };
        let (first, second) = (Self::word(key, index, 0), Self::word(key, index, 1));
        if self.near_tie == Some(index) {
            let (high, low) = TIED_LOGPROBS;
            self.flipped = flips;
            let top = [(first, high), (second, low)];
            return if flips {
                Generated {
                    word: second,
                    logprob: low,
                    top,
                }
            } else {
                Generated {
                    word: first,
                    logprob: high,
                    top,
                }
            };
        }
        Generated {
            word: first,
            logprob: CLEAR_LOGPROB,
            top: [(first, CLEAR_LOGPROB), (second, RUNNER_UP_LOGPROB)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_prefixes_hash_equal_and_divergence_breaks_the_chain() {
        let a = WordTokenizer.encode(&"alpha beta ".repeat(20));
        let mut b = a.clone();
        b[20] ^= 1;
        let (ha, hb) = (block_hashes(&a, 16), block_hashes(&b, 16));
        assert_eq!((ha.len(), hb.len()), (2, 2));
        assert_eq!(ha[0], hb[0]);
        assert_ne!(ha[1], hb[1]);
        assert_eq!(
            WordTokenizer.encode("  two   words "),
            WordTokenizer.encode("two words")
        );
    }

    #[test]
    fn output_follows_the_prompt_until_a_flipped_near_tie_then_parts_for_good() {
        let prompt = WordTokenizer.encode("the same prompt");
        let words = |tie: Option<u32>, flips: bool| {
            let mut g = Generation::new(&prompt, tie);
            (1..=8).map(|i| g.next(i, flips).word).collect::<Vec<_>>()
        };
        assert_eq!(words(None, true), words(None, false));
        assert_eq!(words(Some(3), false), words(None, false));
        let (alone, flipped) = (words(Some(3), false), words(Some(3), true));
        assert_eq!(alone[..2], flipped[..2]);
        assert!(
            alone[2..]
                .iter()
                .zip(&flipped[2..])
                .filter(|(a, b)| a != b)
                .count()
                >= 4
        );
        let other = WordTokenizer.encode("another prompt");
        let mut g = Generation::new(&other, None);
        assert_ne!(
            words(None, false),
            (1..=8).map(|i| g.next(i, false).word).collect::<Vec<_>>()
        );
    }

    #[test]
    fn synthetic_groups_share_exactly_their_prefix_blocks() {
        let a = synthetic_block_hashes(1, 10, 64, 32, 16);
        let b = synthetic_block_hashes(1, 11, 64, 32, 16);
        let c = synthetic_block_hashes(2, 12, 64, 32, 16);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        assert_ne!(a[0], c[0]);
    }
}
