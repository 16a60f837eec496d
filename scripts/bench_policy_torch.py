#!/usr/bin/env python3
"""PyTorch twin of the mulli VLA policy, for a side-by-side CPU speed check against burn.

Mirrors crates/mulli-policy/src/model.rs (the transformer-fusion VLA: GroupNorm CNN image
tokens, or with --stem patch the 2x2 patch-merging stem, a one-layer pre-norm text encoder
pooled to one token, a state token, H learned action queries, a 3-layer pre-norm transformer
over all 62 tokens and a linear action head, with an L1 head or a pi0-style flow-matching
head). The model-size flags mirror `mulli bench --model FILE`, so other sizes (the
flywheel's: --image-size 64 --d-model 96 --fusion-layers 2 --ff 256 --conv-channels
32,32,64,64 --stem patch) can be compared too. It measures

  train   steady-state training samples/s: forward + loss + backward + clip_grad_norm_(1.0)
          + AdamW step on one fixed random batch (data loading is not part of it), timed
          over --steps steps after --warmup untimed ones;
  infer   batch-1 latency of one action chunk under torch.inference_mode() (flow head: the
          observation encoder once, then --flow-steps Euler steps, each re-running the whole
          62-token fusion transformer; no prefix caching), --infer calls after
          --infer-warmup untimed ones, p50 / p99 in ms.

As on the Rust side, each batch holds --distinct-texts instructions (sample i uses string
i % N) and the text encoder runs once per distinct string; its rows are then gathered per
sample with index_select. In eval mode PyTorch uses its fused transformer "fast path"
during inference (pass --no-fastpath to turn it off); nothing is compiled (eager mode).

Run it with the lerobot venv (torch 2.11, CPU), on an otherwise idle machine:

  bash scripts/bench_policy_torch.sh                          # L1 head, default sizes
  bash scripts/bench_policy_torch.sh --head flow              # flow-matching head
  bash scripts/bench_policy_torch.sh --steps 3 --infer 5      # quick smoke check
  /work/venv-lerobot/bin/python scripts/bench_policy_torch.py --threads 1 --batch 32

It prints a human-readable summary, then one final JSON line (framework, torch, threads,
head, params, batch, train_samples_per_s, train_step_s, infer_p50_ms, infer_p99_ms).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import Tensor, nn

# Byte-level tokenizer (crates/mulli-policy/src/tokenizer.rs): ids 0..255 are bytes.
BOS, EOS, PAD, VOCAB = 256, 257, 258, 259


def instruction(i: int) -> str:
    """The i-th distinct instruction of a batch: the strings of mulli's synthetic batches
    (`HostBatch::synthetic`), so both sides encode the same number of tokens."""
    return f"put the object {i} in the basket"


def tokenize(text: str, max_len: int) -> tuple[list[int], int]:
    """BOS + UTF-8 bytes (truncated on a character boundary) + EOS, padded with PAD."""
    raw = text.encode("utf-8")
    end = min(len(raw), max_len - 2)
    while end > 0 and end < len(raw) and (raw[end] & 0xC0) == 0x80:  # continuation byte
        end -= 1
    ids = [BOS, *raw[:end], EOS]
    n = len(ids)
    return ids + [PAD] * (max_len - n), n


def encoder_layer(d: int, heads: int, ff: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model=d,
        nhead=heads,
        dim_feedforward=ff,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )


def conv_out(size: int) -> int:
    """Output side of Conv2d(k=3, stride=2, padding=0)."""
    return (size - 3) // 2 + 1


class PatchMerge(nn.Module):
    """One patch-merging stage of mulli's `stem = "patch"` (model.rs `PatchBlock`):
    channels-last [N, S, S, C] -> [N, S/2, S/2, C'], each output cell a Linear of its 2x2
    block, then LayerNorm and ReLU; an odd last row and column are dropped. `impl` picks how
    PyTorch computes the merge: "reshape" (the same permute + Linear as mulli) or "conv"
    (the equivalent Conv2d(k=2, s=2) on a channels-first view); the benchmark reports the
    faster, so the baseline is PyTorch at its best."""

    def __init__(self, c_in: int, c_out: int, impl: str):
        super().__init__()
        self.impl = impl
        if impl == "conv":
            self.merge = nn.Conv2d(c_in, c_out, kernel_size=2, stride=2, bias=True)
        else:
            self.merge = nn.Linear(4 * c_in, c_out)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, x: Tensor) -> Tensor:
        n, s, _, c = x.shape
        h = s // 2
        x = x[:, : 2 * h, : 2 * h]
        if self.impl == "conv":
            y = self.merge(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            blocks = x.reshape(n, h, 2, h, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h, h, 4 * c)
            y = self.merge(blocks)
        return torch.relu(self.norm(y))


def sinusoidal(t: Tensor, dim: int) -> Tensor:
    """[B] times in [0, 1] -> [B, dim]: half sin, half cos of t * 1000 * freq_k."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * k / half)
    args = t.float()[:, None] * 1000.0 * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class Vla(nn.Module):
    def __init__(self, a: argparse.Namespace):
        super().__init__()
        d = a.d_model
        self.head_mode = a.head
        self.chunk = a.chunk
        self.action_dim = a.action_dim
        self.cameras = a.cameras

        # Image encoder, shared across cameras.
        self.stem = a.stem
        blocks: list[nn.Module] = []
        c_in, side = 3, a.image_size
        for c_out in a.conv_channels:
            if a.stem == "conv":
                blocks += [
                    nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=0, bias=True),
                    nn.GroupNorm(8, c_out, affine=True),
                    nn.ReLU(),
                ]
                side = conv_out(side)
            else:
                blocks.append(PatchMerge(c_in, c_out, a.patch_impl))
                side //= 2
            c_in = c_out
        if side < 1:
            raise SystemExit(f"image_size {a.image_size} too small for {len(a.conv_channels)} stem stages")
        self.cnn = nn.Sequential(*blocks)
        self.patches = side * side
        self.image_proj = nn.Linear(c_in, d)
        self.image_pos = nn.Parameter(torch.randn(a.cameras * self.patches, d) * 0.02)

        # Text encoder: one pre-norm layer, masked mean pool -> one token.
        self.tokens = nn.Embedding(VOCAB, d)
        self.text_pos = nn.Parameter(torch.randn(a.text_len, d) * 0.02)
        self.text_layer = encoder_layer(d, a.heads, a.ff)

        self.state_proj = nn.Linear(a.state_dim, d)
        self.queries = nn.Parameter(torch.randn(a.chunk, d) * 0.02)
        # Added to the text token, the state token and the H action tokens, in that order.
        self.token_pos = nn.Parameter(torch.randn(2 + a.chunk, d) * 0.02)

        self.fusion = nn.TransformerEncoder(
            encoder_layer(d, a.heads, a.ff), num_layers=a.fusion_layers, enable_nested_tensor=False
        )
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, a.action_dim)

        if a.head == "flow":
            self.action_in = nn.Linear(a.action_dim, d)
            self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    # --- observation encoder (runs once per chunk) -----------------------------------------
    def encode_obs(
        self, images: Tensor, text_ids: Tensor, text_mask: Tensor, text_index: Tensor, state: Tensor
    ) -> Tensor:
        """images [B, cams, 3, S, S] in [0, 1]; text_ids / text_mask [U, L] (distinct strings,
        mask 1 = real token); text_index [B] (row of each sample); state [B, state_dim].
        Returns the observation prefix [B, cams * patches + 2, d]."""
        b, cams, ch, h, w = images.shape
        x = images.reshape(b * cams, ch, h, w) * 2.0 - 1.0
        if self.stem == "conv":
            x = self.cnn(x)  # [B*cams, C, s, s]
            x = x.flatten(2).transpose(1, 2)  # [B*cams, s*s, C], row-major over H then W
        else:
            x = self.cnn(x.permute(0, 2, 3, 1))  # channels-last [B*cams, s, s, C]
            x = x.flatten(1, 2)  # [B*cams, s*s, C]
        img = self.image_proj(x).reshape(b, cams * self.patches, -1) + self.image_pos

        emb = self.tokens(text_ids) + self.text_pos[: text_ids.shape[1]]
        real = text_mask > 0
        enc = self.text_layer(emb, src_key_padding_mask=~real)  # [U, L, d]
        m = real.unsqueeze(-1).to(enc.dtype)
        pooled = (enc * m).sum(1) / m.sum(1).clamp_min(1.0)  # [U, d]
        text = pooled.index_select(0, text_index) + self.token_pos[0]

        st = self.state_proj(state) + self.token_pos[1]
        return torch.cat([img, text.unsqueeze(1), st.unsqueeze(1)], dim=1)

    # --- fusion + head (runs once per chunk, or once per Euler step with the flow head) ----
    def fuse(self, prefix: Tensor, action_tokens: Tensor) -> Tensor:
        seq = torch.cat([prefix, action_tokens + self.token_pos[2:]], dim=1)  # [B, 62, d]
        y = self.fusion(seq)[:, -self.chunk :]  # the H action tokens
        return self.head(self.final_norm(y))  # [B, H, action_dim]

    def queries_for(self, b: int) -> Tensor:
        return self.queries.unsqueeze(0).expand(b, -1, -1)

    def velocity(self, prefix: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        time_emb = self.time_mlp(sinusoidal(t, self.queries.shape[1])).unsqueeze(1)
        tokens = self.action_in(x_t) + self.queries_for(x_t.shape[0]) + time_emb
        return self.fuse(prefix, tokens)

    def loss(self, obs: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        prefix = self.encode_obs(*obs)
        b = prefix.shape[0]
        if self.head_mode == "l1":
            return (self.fuse(prefix, self.queries_for(b)) - actions).abs().mean()
        t = torch.rand(b, device=actions.device)
        noise = torch.randn_like(actions)
        tt = t[:, None, None]
        x_t = tt * noise + (1.0 - tt) * actions
        return (self.velocity(prefix, x_t, t) - (noise - actions)).pow(2).mean()

    def predict(self, obs: tuple[Tensor, ...], flow_steps: int) -> Tensor:
        prefix = self.encode_obs(*obs)
        b = prefix.shape[0]
        if self.head_mode == "l1":
            return self.fuse(prefix, self.queries_for(b))
        x = torch.randn(b, self.chunk, self.action_dim, device=prefix.device)
        dt = 1.0 / flow_steps
        for i in range(flow_steps):  # t = 1 (noise) -> 0 (action)
            t = torch.full((b,), 1.0 - i * dt, device=prefix.device)
            x = x - dt * self.velocity(prefix, x, t)
        return x


def make_obs(a: argparse.Namespace, b: int) -> tuple[Tensor, ...]:
    s = a.image_size
    n_text = min(a.distinct_texts, b)
    texts = [instruction(i) for i in range(n_text)]
    rows = [tokenize(t, a.text_len) for t in texts]
    # Padded to the longest instruction, as mulli's batcher does (padding is masked anyway).
    n = max(r[1] for r in rows)
    ids = torch.tensor([r[0][:n] for r in rows], dtype=torch.int64)
    mask = torch.tensor([[1.0 if k < r[1] else 0.0 for k in range(n)] for r in rows])
    index = torch.arange(b, dtype=torch.int64) % n_text
    images = torch.rand(b, a.cameras, 3, s, s)
    state = torch.randn(b, a.state_dim)
    return images, ids, mask, index, state


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an ascending list."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head", choices=["l1", "flow"], default="l1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the GPU side-by-side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--infer", type=int, default=200, help="timed batch-1 inference calls")
    p.add_argument("--infer-warmup", type=int, default=10, help="untimed inference calls")
    p.add_argument("--flow-steps", type=int, default=5, help="Euler steps (flow head)")
    p.add_argument("--no-fastpath", action="store_true", help="disable PyTorch's fused MHA fast path")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--clip", type=float, default=1.0)
    g = p.add_argument_group("model sizes")
    g.add_argument("--cameras", type=int, default=2)
    g.add_argument("--image-size", type=int, default=96)
    g.add_argument("--text-len", type=int, default=64)
    g.add_argument("--distinct-texts", type=int, default=12, help="distinct instructions per batch")
    g.add_argument("--state-dim", type=int, default=15)
    g.add_argument("--action-dim", type=int, default=7)
    g.add_argument("--chunk", type=int, default=10, help="actions per chunk (H)")
    g.add_argument("--d-model", type=int, default=128)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--ff", type=int, default=512)
    g.add_argument("--fusion-layers", type=int, default=3)
    g.add_argument("--stem", choices=["conv", "patch"], default="conv",
                   help="image stem: 3x3 stride-2 convolutions + GroupNorm, or 2x2 patch merging + LayerNorm")
    g.add_argument("--patch-impl", choices=["reshape", "conv"], default="reshape",
                   help="how PyTorch computes a patch merge (same maths; pick the faster)")
    g.add_argument("--conv-channels", type=lambda s: [int(c) for c in s.split(",")], default=[32, 64, 64, 64])
    a = p.parse_args()
    if a.text_len < 2 or a.d_model % 2 or a.d_model % a.heads or any(c % 8 for c in a.conv_channels):
        p.error("need text_len >= 2, an even d_model divisible by heads, conv channels multiple of 8")
    if min(a.batch, a.steps, a.infer, a.flow_steps, a.distinct_texts) < 1:
        p.error("batch, steps, infer, flow-steps and distinct-texts must be at least 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.no_fastpath:
        torch.backends.mha.set_fastpath_enabled(False)

    dev = torch.device(a.device)
    model = Vla(a).to(dev)

    def sync() -> None:
        # CUDA kernels run asynchronously: wait for them before reading the clock.
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    params = sum(p.numel() for p in model.parameters())
    seq_len = a.cameras * model.patches + 2 + a.chunk
    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}, seed {a.seed}")
    print(f"model: head {a.head}, {params:,} parameters, {seq_len} fusion tokens "
          f"({a.cameras}x{model.patches} image + text + state + {a.chunk} action)")
    for name, child in model.named_children():
        print(f"  {name:<12} {sum(p.numel() for p in child.parameters()):>9,}")
    own = {n: t.numel() for n, t in model.named_parameters(recurse=False)}
    print("  " + ", ".join(f"{n} {c:,}" for n, c in own.items()))

    # --- training ------------------------------------------------------------------------
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    obs = tuple(t.to(dev) for t in make_obs(a, a.batch))
    target = torch.randn(a.batch, a.chunk, a.action_dim).to(dev)

    def train_step() -> float:
        loss = model.loss(obs, target)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        train_step()
    step_times, losses = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        losses.append(train_step())
        step_times.append(time.perf_counter() - t0)
    total = sum(step_times)
    step_s = total / a.steps
    samples_per_s = a.batch * a.steps / total
    print(f"train: batch {a.batch}, {a.warmup} warm-up + {a.steps} timed steps: "
          f"{samples_per_s:.1f} samples/s, {step_s * 1e3:.1f} ms/step "
          f"(min {min(step_times) * 1e3:.1f}, max {max(step_times) * 1e3:.1f}); "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    # --- batch-1 inference ---------------------------------------------------------------
    model.eval()
    obs1 = tuple(t.to(dev) for t in make_obs(a, 1))
    lat = []
    with torch.inference_mode():
        for _ in range(a.infer_warmup):
            model.predict(obs1, a.flow_steps)
        for _ in range(a.infer):
            sync()
            t0 = time.perf_counter()
            out = model.predict(obs1, a.flow_steps)
            sync()
            lat.append((time.perf_counter() - t0) * 1e3)
    assert out.shape == (1, a.chunk, a.action_dim) and torch.isfinite(out).all()
    lat.sort()
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    steps_note = f", {a.flow_steps} Euler steps" if a.head == "flow" else ""
    print(f"infer: batch 1{steps_note}, {a.infer_warmup} warm-up + {a.infer} timed calls: "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (min {lat[0]:.2f}, max {lat[-1]:.2f})")

    print(json.dumps({
        "framework": "pytorch",
        "torch": torch.__version__,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "head": a.head,
        "params": params,
        "batch": a.batch,
        "train_samples_per_s": round(samples_per_s, 2),
        "train_step_s": round(step_s, 5),
        "infer_p50_ms": round(p50, 3),
        "infer_p99_ms": round(p99, 3),
    }), flush=True)


if __name__ == "__main__":
    main()
