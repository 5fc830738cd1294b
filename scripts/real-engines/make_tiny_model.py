#!/usr/bin/env python3
"""Build a tiny Llama model directory offline, for running a real serving engine in tests.

No model can be downloaded here, so this writes one: a 2-layer LlamaForCausalLM (hidden 128,
2 heads of 64, intermediate 256, float32) with random weights, and a byte-level BPE tokenizer
trained on text generated from the seed. Its output is nonsense, which is all a benchmark of the
serving path needs; random weights also emit partial UTF-8 and special tokens, so servers send
empty or merged chunks, which is exactly what the client must count correctly.

Everything is a function of --seed: the same seed writes byte-identical files.

Usage:
    make_tiny_model.py OUT_DIR [--seed 0] [--vocab-size 4096] [--tokenizer-out PATH]

Needs numpy, safetensors and tokenizers (all installed with vLLM by install_vllm_cpu.sh).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

BOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS, IM_START, IM_END]

# ChatML, the template most chat models use; vLLM renders it for /v1/chat/completions.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A little real prose so common English pieces get merged too; the bulk of the corpus is
# generated below so that the trainer finds enough distinct pairs to fill the vocabulary.
PROSE = """\
A benchmark sends requests to a server and measures how long each part of the answer takes.
The time to the first token is what a person waits before anything appears on the screen.
The time between tokens decides whether the text flows or stutters. Throughput says how much
work the whole machine does per second, and goodput says how much of it met the targets that
were set. Numbers mean little without the definitions behind them, so every report states
them: what was sent, when it was sent, what came back and when the bytes arrived.
Servers batch requests together, keep a cache of keys and values for every sequence, and
schedule prefill and decode steps. When the cache fills up, requests wait in a queue.
The quick brown fox jumps over the lazy dog; 0123456789; (a, b) -> [c]; {"key": "value"}.
"""

ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t",
          "v", "w", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "qu", "sh", "st", "th", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "oo", "ou", "y"]
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "ck", "nd", "ng", "rt", "st", "x"]
PUNCT = [".", ",", ";", ":", "!", "?"]


def corpus(seed: int, sentences: int = 30000) -> list[str]:
    """Deterministic pseudo-text: a Zipf-like vocabulary of made-up words, digits, punctuation."""
    rng = random.Random(seed)
    words = []
    for _ in range(6000):
        syllables = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
        words.append("".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                             for _ in range(syllables)))
    # Weight by 1/rank so some words are frequent (merged whole) and most are rare (split).
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    lines = PROSE.splitlines() * 20
    for _ in range(sentences):
        n = rng.randint(4, 18)
        picked = rng.choices(words, weights=weights, k=n)
        if rng.random() < 0.3:
            picked.insert(rng.randrange(len(picked) + 1), str(rng.randint(0, 99999)))
        sentence = " ".join(picked)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(PUNCT)
        lines.append(sentence)
    return lines


def train_tokenizer(seed: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    return tok


def llama_weights(seed: int, cfg: dict) -> dict:
    """Random weights under Hugging Face's LlamaForCausalLM names (normal, std 0.02; norms 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    w = {"model.embed_tokens.weight": normal(v, h)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "self_attn.q_proj.weight"] = normal(q, h)
        w[p + "self_attn.k_proj.weight"] = normal(kv, h)
        w[p + "self_attn.v_proj.weight"] = normal(kv, h)
        w[p + "self_attn.o_proj.weight"] = normal(h, q)
        w[p + "mlp.gate_proj.weight"] = normal(i, h)
        w[p + "mlp.up_proj.weight"] = normal(i, h)
        w[p + "mlp.down_proj.weight"] = normal(h, i)
        w[p + "input_layernorm.weight"] = np.ones(h, dtype=np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(h, dtype=np.float32)
    w["model.norm.weight"] = np.ones(h, dtype=np.float32)
    w["lm_head.weight"] = normal(v, h)
    return w


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build(out: Path, seed: int, vocab_size: int) -> dict:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(seed, vocab_size)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if any(i is None for i in ids.values()):
        raise SystemExit(f"error: the trained tokenizer lacks a special token: {ids}")
    tok.save(str(out / "tokenizer.json"))
    # The model's vocabulary is the tokenizer's, so every id the model can sample decodes.
    actual_vocab = tok.get_vocab_size(with_added_tokens=True)

    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "vocab_size": actual_vocab,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[IM_END],
        "pad_token_id": ids[BOS],
        "initializer_range": 0.02,
        "use_cache": True,
    }
    write_json(out / "config.json", cfg)
    write_json(out / "generation_config.json", {
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[IM_END],
        "pad_token_id": ids[BOS],
        "do_sample": True,
    })
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": IM_END,
        "pad_token": BOS,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    })
    write_json(out / "special_tokens_map.json", {
        "bos_token": BOS, "eos_token": IM_END, "pad_token": BOS,
    })
    save_file(llama_weights(seed, cfg), str(out / "model.safetensors"), metadata={"format": "pt"})
    return cfg


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="model directory to write (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the corpus and the weights")
    ap.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary to train")
    ap.add_argument("--tokenizer-out", type=Path,
                    help="also copy tokenizer.json here (for `servebench run --tokenizer`)")
    args = ap.parse_args(argv)

    cfg = build(args.out, args.seed, args.vocab_size)
    if args.tokenizer_out:
        args.tokenizer_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "tokenizer.json", args.tokenizer_out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"[tiny-model] wrote {args.out}: LlamaForCausalLM, {cfg['num_hidden_layers']} layers, "
          f"hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}, seed {args.seed}, "
          f"{size / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
