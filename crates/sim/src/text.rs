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

/// The text of generated token `index` (1-based): a word, so clients counting words count tokens.
pub fn generated_word(request: u64, index: u32) -> &'static str {
    WORDS[((request as usize).wrapping_mul(7) + index as usize) % WORDS.len()]
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
    fn synthetic_groups_share_exactly_their_prefix_blocks() {
        let a = synthetic_block_hashes(1, 10, 64, 32, 16);
        let b = synthetic_block_hashes(1, 11, 64, 32, 16);
        let c = synthetic_block_hashes(2, 12, 64, 32, 16);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        assert_ne!(a[0], c[0]);
    }
}
