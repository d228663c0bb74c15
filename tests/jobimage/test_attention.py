"""Our Mochi attention processor gives the stock processor's output on CPU."""

from __future__ import annotations

import pytest
import torch
from diffusers import MochiTransformer3DModel

from jobimage.attention import T2VMochiAttnProcessor, install_attention, install_stock_attention
from jobimage.models.tiny import TRANSFORMER_CONFIG


@pytest.fixture(scope="module")
def transformer() -> MochiTransformer3DModel:
    torch.manual_seed(0)
    # Two heads and two layers (the tiny model has one of each) so head and layer handling is covered.
    model = MochiTransformer3DModel(**{**TRANSFORMER_CONFIG, "num_layers": 2, "num_attention_heads": 2}).eval()
    with torch.no_grad():
        model.pos_frequencies.normal_(0.0, 0.5)
    return model


def _mask(lengths: list[int], total: int = 256) -> torch.Tensor:
    mask = torch.zeros(len(lengths), total, dtype=torch.bool)
    for row, n in enumerate(lengths):
        mask[row, :n] = True
    return mask


def _inputs(seed: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, prompt embeddings and the prompt mask for one sample per prompt length."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), 12, 2, 8, 12, generator=gen)
    text = torch.randn(len(lengths), 256, TRANSFORMER_CONFIG["text_embed_dim"], generator=gen)
    return x, text, _mask(lengths)


def _forward(model, x, text, mask):
    t = torch.full((x.shape[0],), 640.0)
    with torch.no_grad():
        return model(hidden_states=x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask,
                     return_dict=False)[0]


@pytest.mark.parametrize("lengths", [[17], [1, 17], [9, 9], [256, 3], [0, 5]],
                         ids=["one", "cfg-uneven", "even", "full-length", "empty-prompt"])
def test_same_output_as_stock(transformer, lengths):
    x, text, mask = _inputs(1, lengths)
    install_stock_attention(transformer)
    stock = _forward(transformer, x, text, mask)
    assert install_attention(transformer) == 2
    ours = _forward(transformer, x, text, mask)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)


def test_heads_first_layout_gives_the_same_output(transformer):
    """The benchmark's layout variant (q, k, v contiguous as (B, H, S, D)) changes where the bytes
    lie, not the arithmetic."""
    x, text, mask = _inputs(4, [1, 30])
    install_attention(transformer)
    default = _forward(transformer, x, text, mask)
    install_attention(transformer, T2VMochiAttnProcessor(heads_first=True))
    try:
        torch.testing.assert_close(_forward(transformer, x, text, mask), default, rtol=1e-6, atol=1e-6)
    finally:
        install_attention(transformer)


def test_batched_guidance_equals_one_sample_at_a_time(transformer):
    x, text, mask = _inputs(2, [1, 30])
    install_attention(transformer)
    both = _forward(transformer, x, text, mask)
    alone = torch.cat([_forward(transformer, x[i:i + 1], text[i:i + 1], mask[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, alone, rtol=1e-5, atol=1e-5)


def test_processor_layer_outputs_zero_at_padding(transformer):
    attn = transformer.transformer_blocks[0].attn1
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 24, 32, generator=gen)
    text = torch.randn(2, 256, 32, generator=gen)
    mask = _mask([4, 10])
    with torch.no_grad():
        _, text_out = T2VMochiAttnProcessor()(attn, hidden, text, mask)
    assert text_out.shape == (2, 256, 32)
    # Past the valid tokens only to_add_out's bias remains, as with the stock processor's zero padding.
    bias = attn.to_add_out.bias
    torch.testing.assert_close(text_out[0, 4:], bias.expand(252, -1))
    torch.testing.assert_close(text_out[1, 10:], bias.expand(246, -1))


def test_mask_plan_is_computed_once_per_forward(transformer, monkeypatch):
    import jobimage.attention as attention

    calls = []
    real = attention._MaskPlan

    def counting(mask):
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(attention, "_MaskPlan", counting)
    install_attention(transformer)
    mask = _mask([5])
    x = torch.randn(1, 12, 2, 8, 12)
    text = torch.randn(1, 256, 32)
    _forward(transformer, x, text, mask)
    _forward(transformer, x, text, mask)  # same mask tensor on the next step: no new plan
    assert len(calls) == 1


def _block_inputs(model, x, text, mask) -> dict:
    """The keyword arguments the first transformer block receives in a real forward."""
    seen = {}
    hook = model.transformer_blocks[0].register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
    try:
        _forward(model, x, text, mask)
    finally:
        hook.remove()
    return seen


def test_one_compiled_block_serves_every_prompt_length(transformer):
    """Under torch.compile the block is one graph (fullgraph: no break) and a new prompt length
    reuses it (frame_count stays 1) with the eager result; the stock processor cannot do either."""
    from torch._dynamo.testing import CompileCounter

    install_attention(transformer)
    block = transformer.transformer_blocks[0]
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 12, 2, 8, 12, generator=gen)
    text = torch.randn(2, 256, TRANSFORMER_CONFIG["text_embed_dim"], generator=gen)
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(block, backend=counter, dynamic=False, fullgraph=True)
    for lengths in ([1, 17], [1, 30], [12, 12], [256, 3]):
        kwargs = _block_inputs(transformer, x, text, _mask(lengths))
        with torch.no_grad():
            got, want = compiled(**kwargs), block(**kwargs)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert counter.frame_count == 1
    torch._dynamo.reset()
