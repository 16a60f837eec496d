#!/usr/bin/env python3
"""Make the tiny BERT fixture that mulli-policy's pretrained text encoder is checked against.

Run inside a venv with torch, transformers and tokenizers (any recent version; made with
torch 2.11, transformers 5.24, tokenizers 0.23):

    python scripts/make_tiny_bert_fixture.py crates/mulli-policy/tests/fixtures/tiny-bert

Writes, with HuggingFace's own code:
  config.json        a BertConfig: vocab ~70, hidden 16, 2 layers, 4 heads, intermediate 32,
                     32 positions
  model.safetensors  a randomly initialised BertModel (fixed seed), float32, HF tensor names
                     (the pooler is saved too: the encoder must ignore it)
  tokenizer.json     an uncased BERT WordPiece tokenizer (BertNormalizer with lowercase and
                     accent stripping, as in all-MiniLM-L6-v2), so Korean is NFD-split into
                     jamo, which the vocabulary holds, as bert-base-uncased's does
  expected.json      for each sentence: the token ids and the sentence-transformers mean-pooled
                     last hidden state (padding-masked mean), sentences truncated to 32 tokens

Everything is float32 and small (well under 100 KB in total), so it is committed.
"""
import json
import sys
import unicodedata
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer
from transformers import BertConfig, BertModel

MAX_LEN = 32
SENTENCES = [
    "pick up the red cube and place it on the plate.",
    "케첩을 냉장고에 넣어줘",
    "Put the KETCHUP in the fridge, please! Café? xyzzy",
    # Longer than MAX_LEN tokens: checks truncation (keeps [CLS] ... [SEP]).
    "put the red cube on the plate, then put the plate in the fridge, then pick up the "
    "red cube and put it on the plate again, please.",
]
ENGLISH = ["pick", "up", "the", "red", "cube", "and", "place", "it", "on", "plate", "put",
           "in", "fridge", "please", "cafe", "then", "again", "ket", "##chup", "robot"]
PUNCT = [".", ",", "!", "?", "'"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary():
    vocab = list(SPECIAL) + ENGLISH + PUNCT
    # BertNormalizer (lowercase, strip accents) NFD-decomposes Hangul syllables into jamo,
    # which are letters (Lo), not marks, so they survive; the word is then one run of jamo.
    for word in SENTENCES[1].split():
        jamo = unicodedata.normalize("NFD", word)
        pieces = [jamo[0]] + ["##" + c for c in jamo[1:]]
        for piece in pieces:
            if piece not in vocab:
                vocab.append(piece)
    return {token: i for i, token in enumerate(vocab)}


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()

    wordpiece = BertWordPieceTokenizer(vocab, lowercase=True, unk_token="[UNK]")
    wordpiece.save(str(out / "tokenizer.json"))
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_LEN)

    torch.manual_seed(20260704)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=MAX_LEN,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        initializer_range=0.3,
        attn_implementation="eager",
    )
    model = BertModel(config).eval()
    with torch.no_grad():
        # Make every parameter matter: random LayerNorm scales and biases, not ones/zeros.
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(str(out), safe_serialization=True)

    encodings = tokenizer.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids + [0] * (MAX_LEN - len(e.ids)) for e in encodings])
    mask = torch.tensor([e.attention_mask + [0] * (MAX_LEN - len(e.ids)) for e in encodings])
    types = torch.tensor([e.type_ids + [0] * (MAX_LEN - len(e.ids)) for e in encodings])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        # Each sentence alone (no padding) must give the same embedding as in the batch.
        for i, e in enumerate(encodings):
            alone = model(input_ids=torch.tensor([e.ids])).last_hidden_state.mean(1)[0]
            assert torch.allclose(alone, pooled[i], atol=1e-5), SENTENCES[i]

    expected = {
        "note": "made by scripts/make_tiny_bert_fixture.py with HuggingFace transformers "
                "BertModel; embedding = attention-mask-weighted mean of last_hidden_state",
        "max_len": MAX_LEN,
        "sentences": [
            {"text": s, "ids": e.ids, "tokens": e.tokens,
             "embedding": [round(float(x), 7) for x in pooled[i]]}
            for i, (s, e) in enumerate(zip(SENTENCES, encodings))
        ],
    }
    # One line per sentence: readable diffs, small file.
    lines = [json.dumps(s, ensure_ascii=False) for s in expected["sentences"]]
    head = json.dumps({k: v for k, v in expected.items() if k != "sentences"}, ensure_ascii=False)
    text = head[:-1] + ', "sentences": [\n' + ",\n".join(lines) + "\n]}\n"
    assert json.loads(text) == expected
    (out / "expected.json").write_text(text)
    # save_pretrained adds generation/other files in some versions; keep only ours.
    keep = {"config.json", "model.safetensors", "tokenizer.json", "expected.json"}
    for f in out.iterdir():
        if f.name not in keep:
            f.unlink()
        else:
            f.chmod(0o644)  # safetensors writes 0600
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out}: {sorted(f.name for f in out.iterdir())}, {total} bytes")
    for s in expected["sentences"]:
        print(len(s["ids"]), s["tokens"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/mulli-policy/tests/fixtures/tiny-bert")
