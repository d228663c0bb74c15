"""Check an item before any weight is loaded (the diffusers `check_inputs` habit).

Numbers are checked by `jobimage.limits` (torch-free); the prompt length is counted
in T5 tokens with the model's own tokenizer, which is cheap to load.
"""

from __future__ import annotations

from typing import Any

from jobcontract.records import Item
from jobimage.errors import ValidationError
from jobimage.limits import MAX_SEQUENCE_LENGTH, check_params


def token_count(tokenizer: Any, text: str) -> int:
    """T5 tokens of `text` including the closing `</s>`, as the pipeline counts them."""
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def check_item(item: Item, tokenizer: Any | None = None) -> list[str]:
    """Problems with an item, each naming the field and value; [] when it can run."""
    problems = check_params(
        prompt=item.prompt, negative_prompt=item.negative_prompt, num_frames=item.num_frames,
        height=item.height, width=item.width, num_inference_steps=item.num_inference_steps,
        guidance_scale=item.guidance_scale, fps=item.fps, seed=item.seed,
    )
    if tokenizer is not None and not problems:
        for name in ("prompt", "negative_prompt"):
            n = token_count(tokenizer, getattr(item, name))
            if n > MAX_SEQUENCE_LENGTH:
                problems.append(f"{name}: {n} T5 tokens is over Mochi's limit of {MAX_SEQUENCE_LENGTH}; shorten it")
    return problems


def validate_item(item: Item, tokenizer: Any | None = None) -> None:
    """Raise `ValidationError` listing every problem with the item."""
    if problems := check_item(item, tokenizer):
        raise ValidationError(problems)
