"""Our Mochi attention processor: no per-sample `nonzero`, no mask, one host sync per video.

The stock `MochiAttnProcessor2_0` loops over the batch, gathers each sample's valid
prompt tokens with `nonzero` (a device-to-host sync per sample per layer per step)
and calls SDPA once per sample. T5 masks are a prefix (valid tokens first, padding
after), and the pipeline passes the same mask tensor to every layer at every step, so
we read the prompt lengths once per video, project only the tokens up to the longest,
and call SDPA without a mask once per run of samples with equal prompt length: once
per layer in the split-guidance path (one sample per GPU), twice in single-GPU
guidance (empty negative prompt, real prompt). Unmasked calls let SDPA use cuDNN or
Flash attention, which do not take arbitrary masks. Outputs at padded prompt
positions are zero, as in the stock processor. `diffusers`' `set_attention_backend`
does not reach Mochi's processor, hence this class.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

# Fastest first; SDPA falls through to the next when a kernel cannot take the inputs.
_CUDA_PRIORITY = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # Same arithmetic as the stock processor (fp32 rotation, cast back), so outputs match.
    x_even = x[..., 0::2].float()
    x_odd = x[..., 1::2].float()
    cos = (x_even * freqs_cos - x_odd * freqs_sin).to(x.dtype)
    sin = (x_even * freqs_sin + x_odd * freqs_cos).to(x.dtype)
    return torch.stack([cos, sin], dim=-1).flatten(-2)


class _MaskPlan:
    """How one forward's prompt mask is handled; computed once, shared by every layer and step."""

    def __init__(self, mask: torch.Tensor) -> None:
        mask = mask.bool()
        lengths = mask.sum(dim=1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        is_prefix = (mask == (positions[None, :] < lengths[:, None])).all()
        stats = torch.cat([lengths, is_prefix.to(lengths.dtype)[None]]).tolist()  # the one host sync
        self.lengths = [int(n) for n in stats[:-1]]
        self.prefix = bool(stats[-1])
        self.keep = max(self.lengths, default=0) if self.prefix else mask.shape[1]
        # Samples sharing a prompt length share one unmasked SDPA call (the kernels without
        # mask support, cuDNN and Flash, are the fast ones): (first, last + 1, length) runs.
        self.groups: list[tuple[int, int, int]] = []
        if self.prefix:
            for i, n in enumerate(self.lengths):
                if self.groups and self.groups[-1][2] == n and self.groups[-1][1] == i:
                    self.groups[-1] = (self.groups[-1][0], i + 1, n)
                else:
                    self.groups.append((i, i + 1, n))
        self.text_mask = mask[:, : self.keep]  # used only when the mask is not a prefix


class T2VMochiAttnProcessor:
    """Drop-in replacement for `MochiAttnProcessor2_0` (same inputs, same outputs)."""

    def __init__(self, *, cuda_priority: tuple[str, ...] = _CUDA_PRIORITY) -> None:
        self.cuda_priority = cuda_priority
        self._plan_for: torch.Tensor | None = None
        self._plan: _MaskPlan | None = None

    def _mask_plan(self, mask: torch.Tensor) -> _MaskPlan:
        # Every layer of one forward gets the very same mask tensor: reuse its plan.
        if self._plan_for is not mask:
            self._plan, self._plan_for = _MaskPlan(mask), mask
        assert self._plan is not None
        return self._plan

    def _kernel_context(self, device: torch.device) -> Any:
        if device.type != "cuda":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = [getattr(SDPBackend, name) for name in self.cuda_priority if hasattr(SDPBackend, name)]
        return sdpa_kernel(backends, set_priority=True)

    @staticmethod
    def _by_length(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_len: int, plan: _MaskPlan) -> torch.Tensor:
        """Unmasked SDPA per run of equal prompt lengths; padded prompt positions come out zero."""
        if len(plan.groups) == 1:
            n = plan.groups[0][2]
            out = F.scaled_dot_product_attention(q[:, :, : seq_len + n], k[:, :, : seq_len + n],
                                                 v[:, :, : seq_len + n], dropout_p=0.0, is_causal=False)
            return out if n == plan.keep else F.pad(out, (0, 0, 0, plan.keep - n))
        out = q.new_zeros(q.shape)
        for first, last, n in plan.groups:
            end = seq_len + n
            out[first:last, :, :end] = F.scaled_dot_product_attention(
                q[first:last, :, :end], k[first:last, :, :end], v[first:last, :, :end], dropout_p=0.0, is_causal=False)
        return out

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor, image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self._mask_plan(attention_mask)
        keep = plan.keep

        query = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))
        key = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # Project only the prompt tokens that can matter; padding never reaches a matmul.
        text = encoder_hidden_states[:, :keep]
        enc_query = attn.add_q_proj(text).unflatten(2, (attn.heads, -1))
        enc_key = attn.add_k_proj(text).unflatten(2, (attn.heads, -1))
        enc_value = attn.add_v_proj(text).unflatten(2, (attn.heads, -1))
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

        with self._kernel_context(q.device):
            if plan.prefix:
                out = self._by_length(q, k, v, seq_len, plan)
            else:  # not seen with T5 masks; kept correct, not fast
                video_ok = torch.ones(q.shape[0], seq_len, dtype=torch.bool, device=q.device)
                mask = torch.cat([video_ok, plan.text_mask.to(q.device)], dim=1)[:, None, None, :]
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
                out = out * torch.cat([video_ok, plan.text_mask.to(q.device)], dim=1)[:, None, :, None].to(out.dtype)
        out = out.transpose(1, 2).flatten(2, 3)

        hidden_out, text_out = out[:, :seq_len], out[:, seq_len:]
        full_len = encoder_hidden_states.shape[1]
        if keep < full_len:
            text_out = F.pad(text_out, (0, 0, 0, full_len - keep))

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
