"""Builds fixtures/tokenizers/tiny-bpe/tokenizer.json: a small byte-level BPE tokenizer (GPT-2/Qwen family)
trained by Hugging Face `tokenizers` on deterministic synthetic text, so tests have a real byte-level BPE file
with merges across spaces and digits. Run: python3 -m venv v && v/bin/pip install tokenizers &&
v/bin/python scripts/make_test_tokenizer.py"""

import os
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizers", "tiny-bpe", "tokenizer.json")
WORDS = ("the time people year way day thing world life hand part child eye woman place work week case point "
         "government company number group problem fact river green quickly important history morning research "
         "reason art war party result change education health person door office level face").split()


def corpus(seed=7, lines=4000):
    rng = random.Random(seed)
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 25))]
        words.insert(rng.randint(0, len(words)), str(rng.randint(0, 99999)))
        sentence = " ".join(words)
        yield sentence.capitalize() + rng.choice([".", "!", "?", ",", ";"]) + rng.choice(["", "\n", "  "])


def main():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tok.save(OUT)
    print(OUT, tok.get_vocab_size())


if __name__ == "__main__":
    main()
