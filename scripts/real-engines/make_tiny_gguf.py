#!/usr/bin/env python3
"""Build a tiny Llama model as one GGUF file offline, for running llama.cpp's server in tests.

It is the same model that make_tiny_model.py writes for vLLM: the same seed gives the same
byte-level BPE tokenizer (so the same `tokenizer.json` serves `servebench run --tokenizer`) and the
same random weights (2 layers, hidden 128, 2 heads of 64, intermediate 256, float32), stored
under llama.cpp's tensor names with the q/k rows permuted as llama.cpp's converter
(convert_hf_to_gguf.py, LlamaModel.permute) does for Hugging Face Llama checkpoints. The vocabulary
is written GPT-2 style (tokenizer.ggml.model "gpt2", pre-tokenizer "gpt-2": the byte-level regex the
trainer used), with the merges, the special tokens as control tokens and the ChatML template.

Everything is a function of --seed: the same seed writes a byte-identical file.

Usage:
    make_tiny_gguf.py OUT.gguf [--seed 0] [--vocab-size 4096] [--tokenizer-out PATH]

Needs gguf, numpy and tokenizers (install_llamacpp.sh puts them in .venv-llamacpp).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_model as hf  # the tokenizer, weights and template, shared

# The dimensions make_tiny_model.py writes into config.json (vocab comes from the tokenizer).
DIMS = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
}


def permute(w, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's converter's q/k row permutation: Hugging Face stores each head's rotary
    halves split (rotate_half); ggml's rope pairs adjacent rows, so the rows are interleaved."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def vocab_of(tok) -> tuple[list[str], list[str], list[int]]:
    """Tokens by id (byte-level strings, as in a GPT-2 vocab.json), merges as "a b", types."""
    import gguf

    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    size = tok.get_vocab_size(with_added_tokens=True)
    tokens = [""] * size
    for text, i in vocab.items():
        tokens[i] = text
    special = {a.content: a for a in tok.get_added_tokens_decoder().values()}
    for text in special:
        tokens[tok.token_to_id(text)] = text
    missing = [i for i, t in enumerate(tokens) if not t]
    if missing:
        raise SystemExit(f"error: the tokenizer has no token for ids {missing[:5]}")
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL)
             for t in tokens]
    # tokenizers writes merges as "a b" strings (older) or [a, b] pairs (0.20+).
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges, types


def build(out: Path, seed: int, vocab_size: int, tokenizer_out: Path | None) -> dict:
    import gguf
    import numpy as np

    tok = hf.train_tokenizer(seed, vocab_size)
    ids = {t: tok.token_to_id(t) for t in hf.SPECIAL_TOKENS}
    if any(i is None for i in ids.values()):
        raise SystemExit(f"error: the trained tokenizer lacks a special token: {ids}")
    if tokenizer_out:
        tokenizer_out.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(tokenizer_out))
    tokens, merges, types = vocab_of(tok)
    cfg = dict(DIMS, vocab_size=len(tokens))
    weights = hf.llama_weights(seed, cfg)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch="llama")
    w.add_name("tiny-llama")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids[hf.BOS])
    w.add_eos_token_id(ids[hf.IM_END])
    w.add_pad_token_id(ids[hf.BOS])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_chat_template(hf.CHAT_TEMPLATE)

    h = cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"]
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                 "post_attention_layernorm": "ffn_norm"}
    for layer in range(cfg["num_hidden_layers"]):
        for src, dst in per_layer.items():
            names[f"model.layers.{layer}.{src}.weight"] = f"blk.{layer}.{dst}.weight"
    for src, tensor in weights.items():
        if src.endswith("q_proj.weight"):
            tensor = permute(tensor, h, h)
        elif src.endswith("k_proj.weight"):
            tensor = permute(tensor, h, kv)
        w.add_tensor(names[src], np.ascontiguousarray(tensor, dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return cfg


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the .gguf file to write")
    ap.add_argument("--seed", type=int, default=0, help="seed for the corpus and the weights")
    ap.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary to train")
    ap.add_argument("--tokenizer-out", type=Path,
                    help="also write tokenizer.json here (for `servebench run --tokenizer`)")
    args = ap.parse_args(argv)

    cfg = build(args.out, args.seed, args.vocab_size, args.tokenizer_out)
    print(f"[tiny-gguf] wrote {args.out}: llama, {cfg['num_hidden_layers']} layers, hidden "
          f"{cfg['hidden_size']}, vocab {cfg['vocab_size']}, seed {args.seed}, "
          f"{args.out.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
