"""Builds fixtures/tokenizers/tiny-bpe/tokenizer.json: a small byte-level BPE tokenizer (GPT-2/Qwen family)
trained by Hugging Face `tokenizers` on deterministic synthetic text, so tests have a real byte-level BPE file,
commit-sized, with merges across letters, spaces and digits, and with words it never saw (which it splits).

Run from anywhere (the output is deterministic for a given `tokenizers` version):
    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers
    /tmp/tokvenv/bin/python scripts/make_test_tokenizer.py
"""

import os
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizers", "tiny-bpe",
                   "tokenizer.json")
WORDS = ("the time people year way day thing world life hand part child eye woman place work week case point "
         "government company number group problem fact river green quickly important history morning research "
         "reason art war party result change education health person door office level face of and to in is "
         "that for it as was with be by on not this are or from at which but have an they you were one all we "
         "can has there if more when will would who so no water room money story book word house city team "
         "game line body air light road table window garden paper music field tree bird bread train market "
         "model design value answer energy song page list order rule test data size clear easy strong").split()


def corpus(seed=7, lines=6000):
    rng = random.Random(seed)
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 25))]
        words.insert(rng.randint(0, len(words)), str(rng.randint(0, 99999)))
        sentence = " ".join(words)
        # Half the lines start in lower case, so words are learnt both at the start of a text and after a space.
        if rng.random() < 0.5:
            sentence = sentence.capitalize()
        yield sentence + rng.choice([".", "!", "?", ",", ";"]) + rng.choice(["", "\n", "  "])


def main():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tok.save(OUT)
    print(os.path.normpath(OUT), tok.get_vocab_size(), "tokens,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
