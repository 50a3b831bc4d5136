"""Writes the project's tiny random-weight Llama for real-server tests: a GGUF for llama.cpp's `llama-server` and a
Hugging Face directory (config.json + tokenizer files) that vLLM serves with `--load-format dummy`.

Both use the repository's own byte-level BPE tokenizer (fixtures/tokenizers/tiny-bpe, made by
scripts/make_test_tokenizer.py), so every client and server in the tests counts tokens the same way.
Deterministic: the same arguments give byte-identical files.

    python3 -m venv venv && venv/bin/pip install numpy gguf
    venv/bin/python scripts/real-servers/make_tiny_model.py --out /tmp/tiny-model
"""

import argparse
import json
import os
import shutil

import gguf
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TOKENIZER = os.path.join(ROOT, "fixtures", "tokenizers", "tiny-bpe", "tokenizer.json")

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def read_tokenizer():
    with open(TOKENIZER, encoding="utf-8") as f:
        spec = json.load(f)
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    return spec, tokens, special, merges


def weights(args, n_vocab):
    """Random weights, small enough that activations stay finite through every layer."""
    rng = np.random.default_rng(args.seed)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) * args.std).astype(np.float32)

    d, ff = args.n_embd, args.n_ff
    kv = d * args.n_head_kv // args.n_head
    tensors = {"token_embd.weight": matrix(n_vocab, d)}
    for i in range(args.n_layer):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = np.ones(d, dtype=np.float32)
        tensors[p + "attn_q.weight"] = matrix(d, d)
        tensors[p + "attn_k.weight"] = matrix(kv, d)
        tensors[p + "attn_v.weight"] = matrix(kv, d)
        tensors[p + "attn_output.weight"] = matrix(d, d)
        tensors[p + "ffn_norm.weight"] = np.ones(d, dtype=np.float32)
        tensors[p + "ffn_gate.weight"] = matrix(ff, d)
        tensors[p + "ffn_up.weight"] = matrix(ff, d)
        tensors[p + "ffn_down.weight"] = matrix(d, ff)
    tensors["output_norm.weight"] = np.ones(d, dtype=np.float32)
    tensors["output.weight"] = matrix(n_vocab, d)
    return tensors


def write_gguf(args, path, tokens, special, merges):
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("infer-doctor tiny llama")
    writer.add_context_length(args.ctx)
    writer.add_embedding_length(args.n_embd)
    writer.add_block_count(args.n_layer)
    writer.add_feed_forward_length(args.n_ff)
    writer.add_head_count(args.n_head)
    writer.add_head_count_kv(args.n_head_kv)
    writer.add_rope_dimension_count(args.n_embd // args.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special["<|endoftext|>"])
    writer.add_eos_token_id(special["<|endoftext|>"])
    writer.add_eot_token_id(special["<|im_end|>"])
    writer.add_pad_token_id(special["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    for name, array in weights(args, len(tokens)).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_hf(args, out, spec, tokens, special):
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(TOKENIZER, os.path.join(out, "tokenizer.json"))
    eos = "<|endoftext|>"
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": args.n_embd,
        "intermediate_size": args.n_ff,
        "num_hidden_layers": args.n_layer,
        "num_attention_heads": args.n_head,
        "num_key_value_heads": args.n_head_kv,
        "head_dim": args.n_embd // args.n_head,
        "vocab_size": len(tokens),
        "max_position_embeddings": args.ctx,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": special[eos],
        "eos_token_id": special[eos],
        "torch_dtype": "bfloat16",
    }
    files = {
        "config.json": config,
        "generation_config.json": {"bos_token_id": special[eos], "eos_token_id": special[eos]},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": eos,
            "eos_token": eos,
            "pad_token": eos,
            "add_bos_token": False,
            "model_max_length": args.ctx,
            "chat_template": CHATML,
        },
        "special_tokens_map.json": {"bos_token": eos, "eos_token": eos, "pad_token": eos},
    }
    for name, content in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, sort_keys=True)
            f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-head-kv", type=int, default=4)
    parser.add_argument("--n-ff", type=int, default=768)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--std", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    spec, tokens, special, merges = read_tokenizer()
    os.makedirs(args.out, exist_ok=True)
    write_gguf(args, os.path.join(args.out, "tiny-llama.gguf"), tokens, special, merges)
    write_hf(args, os.path.join(args.out, "hf"), spec, tokens, special)
    print(os.path.join(args.out, "tiny-llama.gguf"))


if __name__ == "__main__":
    main()
