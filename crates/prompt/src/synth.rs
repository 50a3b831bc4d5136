//! Synthetic prompts of an exact token count: natural-looking words are encoded, cut to length, decoded and
//! re-encoded until the count is exact, because decode(encode(x)[..n]) alone misses often (rust_stack.md §1.4.1).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use infer_doctor_core::{PromptItem, PromptSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dist::LengthDist;
use crate::tokenizer::Tokenizer;
use crate::{PromptError, WorkloadInfo};

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "time",
    "people",
    "year",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
    "moment",
    "air",
    "teacher",
    "force",
    "education",
    "river",
    "green",
    "quickly",
    "small",
    "large",
    "important",
    "early",
    "young",
    "different",
    "following",
    "public",
    "able",
    "local",
];

#[derive(Clone, Copy, Debug)]
pub struct SyntheticSpec {
    pub input: LengthDist,
    pub output: LengthDist,
    pub prefix_tokens: u32,
    pub prefix_groups: u32,
    pub seed: u64,
}

pub struct SyntheticSource {
    spec: SyntheticSpec,
    tokenizer: Option<Arc<Tokenizer>>,
    /// Each group's shared prefix text (exactly `prefix_tokens` tokens with a tokenizer).
    prefixes: Vec<String>,
    residual: AtomicU64,
}

/// SplitMix64: decorrelates (seed, index) pairs so each item has an independent, order-free random stream.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn words(rng: &mut StdRng, count: u32) -> String {
    let mut text = String::new();
    for i in 0..count {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    text
}

/// Makes `base + more words` encode to exactly `target` tokens (at most a few passes); returns the text and its
/// verified count.
fn exact(tokenizer: &Tokenizer, base: &str, rng: &mut StdRng, target: u32) -> (String, u32) {
    let mut text = base.to_string();
    for _ in 0..8 {
        let ids = tokenizer.encode(&text);
        let have = ids.len() as u32;
        if have == target {
            return (text, have);
        }
        if have < target {
            // Common words are about one token each; add a few extra so the next pass can cut.
            let missing = target - have;
            text.push(' ');
            text.push_str(&words(rng, missing + missing / 8 + 2));
        } else {
            text = tokenizer.decode(&ids[..target as usize]);
        }
    }
    let count = tokenizer.encode(&text).len() as u32;
    (text, count)
}

impl SyntheticSource {
    pub fn new(
        spec: SyntheticSpec,
        tokenizer: Option<Arc<Tokenizer>>,
    ) -> Result<SyntheticSource, PromptError> {
        let mut rng = StdRng::seed_from_u64(mix(spec.seed ^ 0x9ef1));
        let groups = if spec.prefix_tokens > 0 {
            spec.prefix_groups.max(1)
        } else {
            0
        };
        let source = SyntheticSource {
            spec,
            tokenizer,
            prefixes: Vec::new(),
            residual: AtomicU64::new(0),
        };
        let prefixes = (0..groups)
            .map(|_| match &source.tokenizer {
                Some(t) => {
                    let (text, count) = exact(t, "", &mut rng, spec.prefix_tokens);
                    source.note_residual(count != spec.prefix_tokens);
                    text
                }
                None => words(&mut rng, spec.prefix_tokens),
            })
            .collect();
        Ok(SyntheticSource { prefixes, ..source })
    }

    fn note_residual(&self, missed: bool) {
        if missed {
            self.residual.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn info(&self) -> WorkloadInfo {
        let mut notes = Vec::new();
        if self.tokenizer.is_none() {
            notes.push(
                "no tokenizer: input lengths are approximate (one common word ≈ one token); pass --tokenizer DIR \
                 for exact counts"
                    .to_string(),
            );
        }
        WorkloadInfo {
            kind: "synthetic",
            tokenizer: self.tokenizer.as_ref().map(|t| t.name()),
            exact_input_lengths: self.tokenizer.is_some(),
            residual_mismatches: self.residual.load(Ordering::Relaxed),
            notes,
            ..Default::default()
        }
    }
}

impl PromptSource for SyntheticSource {
    fn item(&self, index: u64) -> PromptItem {
        let mut rng = StdRng::seed_from_u64(mix(self.spec.seed ^ mix(index)));
        let n = self.spec.input.sample(&mut rng);
        let max_tokens = self.spec.output.sample(&mut rng);
        let prefix = self
            .prefixes
            .get(index as usize % self.prefixes.len().max(1))
            .map_or("", String::as_str);
        let (text, input_tokens) = match &self.tokenizer {
            Some(t) => {
                let target = n + if prefix.is_empty() {
                    0
                } else {
                    self.spec.prefix_tokens
                };
                let base = if prefix.is_empty() {
                    words(&mut rng, n)
                } else {
                    format!("{prefix} {}", words(&mut rng, n))
                };
                let (text, count) = exact(t, &base, &mut rng, target);
                self.note_residual(count != target);
                (text, Some(count))
            }
            None if prefix.is_empty() => (words(&mut rng, n), None),
            None => (format!("{prefix} {}", words(&mut rng, n)), None),
        };
        PromptItem {
            text,
            messages: None,
            input_tokens,
            max_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tokenizers() -> Vec<Arc<Tokenizer>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers");
        let mut found: Vec<Arc<Tokenizer>> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| Tokenizer::load(&e.ok()?.path()).ok().map(Arc::new))
            .collect();
        found.sort_by_key(|t| t.name());
        assert!(
            !found.is_empty(),
            "fixture tokenizers missing under {}",
            root.display()
        );
        found
    }

    fn spec(input: &str, prefix_tokens: u32, prefix_groups: u32) -> SyntheticSpec {
        SyntheticSpec {
            input: input.parse().unwrap(),
            output: "16".parse().unwrap(),
            prefix_tokens,
            prefix_groups,
            seed: 3,
        }
    }

    #[test]
    fn every_prompt_has_exactly_the_requested_tokens() {
        for tok in tokenizers() {
            for (input, prefix, groups) in [("1-2000", 0, 1), ("5-300", 64, 3)] {
                let source =
                    SyntheticSource::new(spec(input, prefix, groups), Some(tok.clone())).unwrap();
                for i in 0..60 {
                    let item = source.item(i);
                    let counted = tok.encode(&item.text).len() as u32;
                    assert_eq!(Some(counted), item.input_tokens, "{} item {i}", tok.name());
                }
                let info = source.info();
                assert_eq!(info.residual_mismatches, 0, "{}: {info:?}", tok.name());
                assert!(info.exact_input_lengths);
            }
        }
    }

    #[test]
    fn items_are_reproducible_in_any_order_and_distinct() {
        let tok = tokenizers().remove(0);
        let source = SyntheticSource::new(spec("50", 8, 2), Some(tok.clone())).unwrap();
        let backwards: Vec<_> = (0..5).rev().map(|i| source.item(i)).collect();
        let again = SyntheticSource::new(spec("50", 8, 2), Some(tok)).unwrap();
        for (k, i) in (0..5).rev().enumerate() {
            assert_eq!(again.item(i), backwards[k]);
        }
        assert_ne!(backwards[0].text, backwards[1].text);
        // Items of one group share its prefix.
        let (a, b) = (source.item(0).text, source.item(2).text);
        assert_eq!(
            a.split(' ').take(3).collect::<Vec<_>>(),
            b.split(' ').take(3).collect::<Vec<_>>()
        );
    }

    #[test]
    fn without_a_tokenizer_words_stand_in_for_tokens_and_it_says_so() {
        let source = SyntheticSource::new(spec("40", 0, 1), None).unwrap();
        let item = source.item(0);
        assert_eq!(item.text.split(' ').count(), 40);
        assert_eq!(item.input_tokens, None);
        assert!(source.info().notes[0].contains("approximate"));
    }
}
