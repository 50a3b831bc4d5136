//! Synthetic prompts of an exact token count: natural-looking words are encoded, cut or extended, decoded and
//! re-encoded until the count is exact, because decode(encode(x)[..n]) alone misses often (rust_stack.md §1.4.1).

use std::cmp::Ordering as Cmp;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use infer_doctor_core::{PromptItem, PromptSource, TokenCounter};
use rand::Rng;
use rand::rngs::StdRng;

use crate::dist::LengthDist;
use crate::tokenizer::Tokenizer;
use crate::{PromptError, WorkloadInfo, item_rng, mix};

/// Common English words: they tokenize like real text, where random token ids decode to fragments that merge
/// with their neighbours unpredictably.
const WORDS: &str = include_str!("words.txt");

/// Encodings allowed per prompt; two almost always suffice, the rest is headroom for odd tokenizers.
const MAX_PASSES: usize = 8;

/// Below this many one-token words the openings that keep prompts apart get long, so all words are used instead.
const MIN_POOL: usize = 32;

/// Keeps the seeds of group prefixes apart from those of prompts.
const PREFIX_DOMAIN: u64 = 0x5052_4546_4958;

#[derive(Clone, Copy, Debug)]
pub struct SyntheticSpec {
    /// Tokens of each prompt after its shared prefix.
    pub input: LengthDist,
    /// `max_tokens` to request.
    pub output: LengthDist,
    /// Tokens of the prefix shared within a group; 0 for none.
    pub prefix_tokens: u32,
    /// Distinct shared prefixes; prompt `i` uses prefix `i % prefix_groups` (0 counts as 1).
    pub prefix_groups: u32,
    pub seed: u64,
}

struct Prefix {
    text: String,
    /// Verified count, which differs from `prefix_tokens` only if building it fell short.
    tokens: usize,
}

pub struct SyntheticSource {
    spec: SyntheticSpec,
    tokenizer: Option<Arc<Tokenizer>>,
    /// Words prompts are made of: with a tokenizer, the ones it keeps whole, so `n` words start at `n` tokens.
    pool: Vec<&'static str>,
    prefixes: Vec<Prefix>,
    residual: AtomicU64,
}

impl SyntheticSource {
    pub fn new(
        spec: SyntheticSpec,
        tokenizer: Option<Arc<Tokenizer>>,
    ) -> Result<SyntheticSource, PromptError> {
        if spec.prefix_tokens == 0 && spec.prefix_groups > 1 {
            return Err(PromptError::Spec(format!(
                "{} prefix groups need a shared prefix length above 0 tokens",
                spec.prefix_groups
            )));
        }
        let all: Vec<&'static str> = WORDS.split_whitespace().collect();
        let pool = match &tokenizer {
            Some(tok) => {
                let whole: Vec<&'static str> = all
                    .iter()
                    .copied()
                    .filter(|w| tok.count(&format!("{w} {w}")) == tok.count(w) + 1)
                    .collect();
                if whole.len() >= MIN_POOL { whole } else { all }
            }
            None => all,
        };
        let mut source = SyntheticSource {
            spec,
            tokenizer,
            pool,
            prefixes: Vec::new(),
            residual: AtomicU64::new(0),
        };
        let groups = if spec.prefix_tokens > 0 {
            u64::from(spec.prefix_groups.max(1))
        } else {
            0
        };
        let prefixes = (0..groups)
            .map(|group| {
                let seed = spec.seed ^ PREFIX_DOMAIN;
                let mut rng = item_rng(seed, group);
                let target = spec.prefix_tokens as usize;
                let body = source.words(seed, group, &mut rng, target);
                let (text, tokens) = source.fit(None, body, &mut rng, target);
                if tokens != target {
                    source.residual.fetch_add(1, Ordering::Relaxed);
                }
                Prefix { text, tokens }
            })
            .collect();
        source.prefixes = prefixes;
        Ok(source)
    }

    pub fn info(&self) -> WorkloadInfo {
        let mut notes = Vec::new();
        if self.tokenizer.is_some() {
            notes.push(
                "input lengths count the prompt text alone: a server may add a BOS token, and chat requests add \
                 the chat template's tokens"
                    .to_string(),
            );
        } else {
            notes.push(
                "no tokenizer: input lengths are approximate (one common word ≈ one token); pass --tokenizer DIR \
                 for exact counts"
                    .to_string(),
            );
        }
        if !self.prefixes.is_empty() {
            let groups = self.prefixes.len();
            notes.push(format!(
                "{groups} shared prefix(es) of {} tokens; request i starts with prefix i mod {groups}, so a \
                 server's prefix cache can reuse it",
                self.spec.prefix_tokens
            ));
        }
        let residual = self.residual.load(Ordering::Relaxed);
        if residual > 0 {
            notes.push(format!(
                "{residual} prompt(s) or shared prefix(es) could not be built to the exact length; each prompt \
                 records its true count"
            ));
        }
        WorkloadInfo {
            kind: "synthetic",
            tokenizer: self.tokenizer.as_ref().map(|t| t.name()),
            exact_input_lengths: self.tokenizer.is_some(),
            residual_mismatches: residual,
            notes,
            ..Default::default()
        }
    }

    /// `count` words whose first ones spell `index` in base `pool.len()`, each digit shifted by a hash of the
    /// seed and the digits before it: prompts differ within their first words (so a server's prefix cache
    /// cannot match them by accident), stay distinct however short, and still look random.
    fn words(&self, seed: u64, index: u64, rng: &mut StdRng, count: usize) -> String {
        let base = self.pool.len() as u64;
        // Every index gets the same number of digits, so no opening is the start of another.
        let width = digits(base).min(count);
        let mut text = String::with_capacity(count * 8);
        let (mut rest, mut salt) = (index, mix(seed));
        for _ in 0..width {
            let digit = rest % base;
            rest /= base;
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(self.pool[((digit + salt % base) % base) as usize]);
            salt = mix(salt ^ digit);
        }
        self.push_random_words(&mut text, rng, count - width);
        text
    }

    fn push_random_words(&self, text: &mut String, rng: &mut StdRng, count: usize) {
        for _ in 0..count {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(self.pool[rng.random_range(0..self.pool.len())]);
        }
    }

    /// `head` kept byte for byte (so a shared prefix stays a token prefix), then `body` cut or extended until
    /// the whole encodes to exactly `target` tokens. Returns the closest text found and its verified count.
    fn fit(
        &self,
        head: Option<&Prefix>,
        mut body: String,
        rng: &mut StdRng,
        target: usize,
    ) -> (String, usize) {
        let join = |body: &str| match head {
            Some(p) => format!("{} {body}", p.text),
            None => body.to_string(),
        };
        let Some(tok) = &self.tokenizer else {
            return (join(&body), target);
        };
        let head_tokens = head.map_or(0, |p| p.tokens).min(target);
        let mut best: Option<(String, usize)> = None;
        for _ in 0..MAX_PASSES {
            let text = join(&body);
            let ids = tok.encode(&text);
            let have = ids.len();
            if best
                .as_ref()
                .is_none_or(|(_, b)| have.abs_diff(target) < b.abs_diff(target))
            {
                best = Some((text, have));
            }
            match have.cmp(&target) {
                Cmp::Equal => break,
                // Cutting in token space and decoding lands within a token or two, whatever the words.
                Cmp::Greater => {
                    body = tok
                        .decode(&ids[head_tokens..target])
                        .trim_start()
                        .to_string();
                }
                // Every added word is at least one token, so the next pass is long enough to cut.
                Cmp::Less => self.push_random_words(&mut body, rng, target - have),
            }
        }
        best.unwrap_or_default()
    }
}

/// Words needed to spell any u64 in `base`.
fn digits(base: u64) -> usize {
    let mut n = 0;
    let mut span: u128 = 1;
    while span <= u128::from(u64::MAX) {
        span *= u128::from(base.max(2));
        n += 1;
    }
    n
}

impl PromptSource for SyntheticSource {
    fn item(&self, index: u64) -> PromptItem {
        let mut rng = item_rng(self.spec.seed, index);
        let n = self.spec.input.sample(&mut rng) as usize;
        let max_tokens = self.spec.output.sample(&mut rng);
        let head = self
            .prefixes
            .get((index % self.prefixes.len().max(1) as u64) as usize);
        let target = n + head.map_or(0, |_| self.spec.prefix_tokens as usize);
        let body = self.words(self.spec.seed, index, &mut rng, n);
        let (text, count) = self.fit(head, body, &mut rng, target);
        if count != target {
            self.residual.fetch_add(1, Ordering::Relaxed);
        }
        PromptItem {
            text,
            messages: None,
            input_tokens: self.tokenizer.as_ref().map(|_| count as u32),
            max_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::fixture;
    use std::collections::HashSet;

    fn fixtures() -> Vec<Arc<Tokenizer>> {
        ["tiny-bpe", "all-minilm-l6-v2", "claude-v1"]
            .into_iter()
            .map(|name| Arc::new(Tokenizer::load(&fixture(name)).unwrap()))
            .collect()
    }

    fn spec(input: &str, prefix_tokens: u32, prefix_groups: u32) -> SyntheticSpec {
        SyntheticSpec {
            input: input.parse().unwrap(),
            output: "16-32".parse().unwrap(),
            prefix_tokens,
            prefix_groups,
            seed: 3,
        }
    }

    /// The length `item(i)` was asked for, replayed from its random stream.
    fn target(spec: &SyntheticSpec, index: u64) -> usize {
        let mut rng = item_rng(spec.seed, index);
        spec.input.sample(&mut rng) as usize + spec.prefix_tokens as usize
    }

    /// Builds prompts of many lengths, with and without shared prefixes, and checks each against a fresh count.
    /// `split_words` also uses the words the tokenizer splits, so cuts land inside words and the repair passes
    /// have work to do.
    fn assert_exact(name: &str, split_words: bool) {
        let tok = Arc::new(Tokenizer::load(&fixture(name)).unwrap());
        for (input, prefix, groups, items) in [
            ("1-2000", 0, 1, 50),
            ("1-600", 64, 4, 80),
            ("1-3", 5, 2, 40),
        ] {
            let spec = spec(input, prefix, groups);
            let mut source = SyntheticSource::new(spec, Some(tok.clone())).unwrap();
            if split_words {
                source.pool = WORDS.split_whitespace().collect();
            }
            let mut missed = 0;
            for i in 0..items {
                let item = source.item(i);
                let counted = tok.encode(&item.text).len();
                assert_eq!(Some(counted as u32), item.input_tokens, "{name} item {i}");
                missed += usize::from(counted != target(&spec, i));
                assert!((16..=32).contains(&item.max_tokens));
            }
            let info = source.info();
            assert_eq!(info.residual_mismatches, missed as u64, "{name}");
            assert_eq!(missed, 0, "{name} {input}: {info:?}");
            assert!(info.exact_input_lengths);
            assert_eq!(info.tokenizer, Some(tok.name()));
        }
    }

    #[test]
    fn exact_lengths_with_a_byte_level_bpe() {
        assert_exact("tiny-bpe", false);
        assert_exact("tiny-bpe", true);
    }

    #[test]
    fn exact_lengths_with_a_wordpiece_tokenizer() {
        assert_exact("all-minilm-l6-v2", false);
    }

    #[test]
    fn exact_lengths_with_a_published_byte_level_bpe() {
        assert_exact("claude-v1", false);
        assert_exact("claude-v1", true);
    }

    #[test]
    fn a_shared_prefix_is_a_token_prefix_of_every_prompt_in_its_group() {
        for tok in fixtures() {
            let source = SyntheticSource::new(spec("20-80", 48, 3), Some(tok.clone())).unwrap();
            let items: Vec<PromptItem> = (0..12).map(|i| source.item(i)).collect();
            let heads: Vec<Vec<u32>> = (0..3)
                .map(|g| tok.encode(&source.prefixes[g].text))
                .collect();
            assert!(heads.iter().all(|h| h.len() == 48), "{}", tok.name());
            assert_eq!(
                heads.iter().collect::<HashSet<_>>().len(),
                3,
                "groups differ"
            );
            for (i, item) in items.iter().enumerate() {
                assert!(item.text.starts_with(&source.prefixes[i % 3].text));
                let ids = tok.encode(&item.text);
                assert_eq!(ids[..48], heads[i % 3][..], "{} item {i}", tok.name());
                // The first token after the prefix already tells prompts of a group apart (usually).
                assert_ne!(
                    ids.get(48..52),
                    tok.encode(&items[(i + 3) % 12].text).get(48..52)
                );
            }
        }
    }

    #[test]
    fn items_repeat_in_any_order_and_never_repeat_each_other() {
        let tok = fixtures().remove(0);
        let make = || SyntheticSource::new(spec("12-40", 8, 2), Some(tok.clone())).unwrap();
        let (forward, backward) = (make(), make());
        let ahead: Vec<PromptItem> = (0..300).map(|i| forward.item(i)).collect();
        for i in (0..300).rev() {
            assert_eq!(backward.item(i), ahead[i as usize]);
        }
        assert_eq!(
            forward.item(77),
            ahead[77],
            "a second call gives the same item"
        );
        let texts: HashSet<&str> = ahead.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts.len(), 300);
        let other_seed = SyntheticSource::new(
            SyntheticSpec {
                seed: 4,
                ..spec("12-40", 8, 2)
            },
            Some(tok.clone()),
        )
        .unwrap();
        assert_ne!(other_seed.item(0).text, ahead[0].text);
        // Two-token prompts are distinct too, for as many items as two words can spell.
        let short = SyntheticSource::new(spec("2", 0, 1), Some(tok)).unwrap();
        let two_words: HashSet<String> = (0..500).map(|i| short.item(i).text).collect();
        assert_eq!(two_words.len(), 500);
    }

    #[test]
    fn without_a_tokenizer_words_stand_in_for_tokens_and_it_says_so() {
        let spec = spec("10-40", 6, 2);
        let source = SyntheticSource::new(spec, None).unwrap();
        for i in 0..50 {
            let item = source.item(i);
            assert_eq!(item.text.split(' ').count(), target(&spec, i));
            assert_eq!(item.input_tokens, None);
        }
        assert_ne!(source.item(0).text, source.item(2).text);
        let info = source.info();
        assert!(!info.exact_input_lengths);
        assert!(info.notes[0].contains("approximate"), "{info:?}");
        assert!(info.notes[1].contains("2 shared prefix"), "{info:?}");
    }

    #[test]
    fn prefix_groups_without_a_prefix_are_refused() {
        let err = SyntheticSource::new(spec("10", 0, 4), None).err().unwrap();
        assert!(err.to_string().contains("4 prefix groups"), "{err}");
        assert!(SyntheticSource::new(spec("10", 0, 1), None).is_ok());
        let zero_groups = SyntheticSource::new(spec("10", 4, 0), None).unwrap();
        assert_eq!(zero_groups.prefixes.len(), 1, "0 groups counts as 1");
    }

    #[test]
    fn prompts_that_cannot_be_exact_are_counted_and_carry_their_true_length() {
        // Every character is its own unknown token, and unknown tokens decode to the five characters `[UNK]`:
        // no text of 1 token survives a decode and re-encode, so the builder must give up and say so.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
                "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated",
                                  "invert": false},
                "post_processor": null, "decoder": null,
                "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "e": 1}, "unk_token": "[UNK]"}}"#,
        )
        .unwrap();
        let tok = Arc::new(Tokenizer::load(dir.path()).unwrap());
        let spec = spec("3-9", 0, 1);
        let source = SyntheticSource::new(spec, Some(tok.clone())).unwrap();
        let mut missed = 0;
        for i in 0..10 {
            let item = source.item(i);
            let counted = tok.encode(&item.text).len();
            assert_eq!(item.input_tokens, Some(counted as u32));
            missed += u64::from(counted != target(&spec, i));
        }
        let info = source.info();
        assert!(missed > 0);
        assert_eq!(info.residual_mismatches, missed);
        assert!(
            info.notes.iter().any(|n| n.contains("could not be built")),
            "{info:?}"
        );
    }

    #[test]
    fn openings_have_one_width_for_any_key() {
        assert_eq!(digits(2), 64);
        assert_eq!(digits(256), 8);
        assert_eq!(digits(257), 8);
        assert_eq!(digits(381), 8);
        assert_eq!(digits(50), 12);
    }
}
