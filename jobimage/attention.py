"""Our Mochi attention processor: no per-sample `nonzero`, no mask, one host sync per video, and
shapes that do not depend on the prompt, so one compiled block serves every prompt.

The stock `MochiAttnProcessor2_0` loops over the batch, gathers each sample's valid prompt
tokens with `nonzero` (a device-to-host sync per sample per layer per step, and a graph break
under torch.compile) and calls SDPA once per sample. T5 masks are a prefix (valid tokens first,
padding after), and the pipeline passes the same mask tensor to every layer at every step, so we
read the prompt lengths once per mask and call SDPA without a mask once per run of samples with
equal prompt length: once per layer in the split-guidance path (one sample per GPU), twice in
single-GPU guidance (empty negative prompt, real prompt). Unmasked calls let SDPA use cuDNN or
Flash attention, which do not take arbitrary masks. Outputs at padded prompt positions are zero,
as in the stock processor.

The variable-length part is one custom op (`t2v::mochi_joint_attention`) with a fixed output
shape: torch.compile sees an opaque call instead of data-dependent shapes, so the compiled block
has no graph break and is not recompiled when the prompt length changes. All 256 prompt positions
are projected (padding included, about 0.1% of a layer's FLOPs at 848x480) for the same reason.
`diffusers`' `set_attention_backend` does not reach Mochi's processor, hence this class.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
import torch.nn.functional as F

# Fastest first; SDPA falls through to the next when a kernel cannot take the inputs. Measured on
# an H200 at Mochi's 163-frame shape: cuDNN 580 TFLOP/s, Flash 362, memory-efficient 182
# (docs/performance.md).
_CUDA_PRIORITY = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # Same arithmetic as the stock processor (fp32 rotation, cast back), so outputs match.
    x_even = x[..., 0::2].float()
    x_odd = x[..., 1::2].float()
    cos = (x_even * freqs_cos - x_odd * freqs_sin).to(x.dtype)
    sin = (x_even * freqs_sin + x_odd * freqs_cos).to(x.dtype)
    return torch.stack([cos, sin], dim=-1).flatten(-2)


class _MaskPlan:
    """How one prompt mask is handled; computed once, shared by every layer and step."""

    def __init__(self, mask: torch.Tensor) -> None:
        mask = mask.bool()
        lengths = mask.sum(dim=1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        is_prefix = (mask == (positions[None, :] < lengths[:, None])).all()
        stats = torch.cat([lengths, is_prefix.to(lengths.dtype)[None]]).tolist()  # the one host sync
        self.lengths = [int(n) for n in stats[:-1]]
        self.prefix = bool(stats[-1])
        # Samples sharing a prompt length share one unmasked SDPA call (the kernels without
        # mask support, cuDNN and Flash, are the fast ones): (first, last + 1, length) runs.
        self.groups: list[tuple[int, int, int]] = []
        if self.prefix:
            for i, n in enumerate(self.lengths):
                if self.groups and self.groups[-1][2] == n and self.groups[-1][1] == i:
                    self.groups[-1] = (self.groups[-1][0], i + 1, n)
                else:
                    self.groups.append((i, i + 1, n))


class _PlanCache(threading.local):
    """The last mask's plan, per thread (each GPU's worker thread has its own mask).

    The mask is held, so its memory cannot be reused by another tensor while its plan is cached;
    the version counter catches an in-place change.
    """

    mask: torch.Tensor | None = None
    key: tuple | None = None
    plan: _MaskPlan | None = None

    def get(self, mask: torch.Tensor) -> _MaskPlan:
        key = (mask.data_ptr(), mask._version, tuple(mask.shape), tuple(mask.stride()), mask.device)
        if self.plan is None or key != self.key:
            self.mask, self.key, self.plan = mask, key, _MaskPlan(mask)
        return self.plan


_plans = _PlanCache()


def _kernel_context(device: torch.device) -> Any:
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [getattr(SDPBackend, name) for name in _CUDA_PRIORITY if hasattr(SDPBackend, name)]
    return sdpa_kernel(backends, set_priority=True)


def _by_length(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_len: int, plan: _MaskPlan) -> torch.Tensor:
    """Unmasked SDPA per run of equal prompt lengths; padded prompt positions come out zero."""
    total = q.shape[2]
    if len(plan.groups) == 1:
        end = seq_len + plan.groups[0][2]
        out = F.scaled_dot_product_attention(q[:, :, :end], k[:, :, :end], v[:, :, :end], dropout_p=0.0,
                                             is_causal=False)
        return F.pad(out, (0, 0, 0, total - end))
    out = q.new_zeros(q.shape)
    for first, last, n in plan.groups:
        end = seq_len + n
        out[first:last, :, :end] = F.scaled_dot_product_attention(
            q[first:last, :, :end], k[first:last, :, :end], v[first:last, :, :end], dropout_p=0.0, is_causal=False)
    return out


@torch.library.custom_op("t2v::mochi_joint_attention", mutates_args=())
def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """Attention over video tokens then prompt tokens, (B, H, N + T, D) with T = prompt_mask's width;
    padded prompt positions neither attend nor are attended to, and come out zero."""
    plan = _plans.get(prompt_mask)
    seq_len = q.shape[2] - prompt_mask.shape[1]
    with _kernel_context(q.device):
        if plan.prefix:
            out = _by_length(q, k, v, seq_len, plan)
        else:  # not seen with T5 masks; kept correct, not fast
            video_ok = torch.ones(q.shape[0], seq_len, dtype=torch.bool, device=q.device)
            keep = torch.cat([video_ok, prompt_mask.bool().to(q.device)], dim=1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], dropout_p=0.0,
                                                 is_causal=False)
            out = out * keep[:, None, :, None].to(out.dtype)
    return out.contiguous()


@joint_attention.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    return q.new_empty(q.shape)  # contiguous, as the real op returns


class T2VMochiAttnProcessor:
    """Drop-in replacement for `MochiAttnProcessor2_0` (same inputs, same outputs).

    `heads_first=True` lays q, k and v out as contiguous (B, H, S, D) before the attention instead of
    handing SDPA (B, S, H, D) tensors seen through `transpose(1, 2)`. In a compiled block inductor
    can write them that way in the kernel that makes them; in eager it is three extra copies. It is a
    candidate for the next GPU run (docs/performance.md: cuDNN ran 5 % slower inside the step than
    alone on contiguous input), off until measured.
    """

    def __init__(self, heads_first: bool = False) -> None:
        self.heads_first = heads_first

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor, image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        query = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))
        key = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        enc_query = attn.add_q_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        enc_key = attn.add_k_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        enc_value = attn.add_v_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_added_q is not None:
            enc_query = attn.norm_added_q(enc_query)
        if attn.norm_added_k is not None:
            enc_key = attn.norm_added_k(enc_key)

        if image_rotary_emb is not None:
            query = _apply_rotary_emb(query, *image_rotary_emb)
            key = _apply_rotary_emb(key, *image_rotary_emb)

        seq_len = query.shape[1]
        # (B, S, H, D) -> (B, H, S, D), video tokens then prompt tokens, as the stock processor.
        q = torch.cat([query, enc_query], dim=1).transpose(1, 2)
        k = torch.cat([key, enc_key], dim=1).transpose(1, 2)
        v = torch.cat([value, enc_value], dim=1).transpose(1, 2)
        if self.heads_first:
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = joint_attention(q, k, v, attention_mask).transpose(1, 2).flatten(2, 3)

        hidden_out, text_out = out[:, :seq_len], out[:, seq_len:]
        hidden_out = attn.to_out[1](attn.to_out[0](hidden_out))
        if hasattr(attn, "to_add_out"):
            text_out = attn.to_add_out(text_out)
        return hidden_out, text_out


def install_attention(transformer: torch.nn.Module, processor: Any | None = None) -> int:
    """Put our processor (or `processor`) on every Mochi attention layer; return how many."""
    from diffusers.models.attention_processor import MochiAttention

    processor = processor if processor is not None else T2VMochiAttnProcessor()
    count = 0
    for module in transformer.modules():
        if isinstance(module, MochiAttention):
            module.processor = processor
            count += 1
    return count


def install_stock_attention(transformer: torch.nn.Module) -> int:
    """Put diffusers' own `MochiAttnProcessor2_0` back (benchmarks and equivalence tests)."""
    from diffusers.models.attention_processor import MochiAttnProcessor2_0

    return install_attention(transformer, MochiAttnProcessor2_0())
