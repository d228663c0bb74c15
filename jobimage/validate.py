"""Check an item before any weight is loaded (the diffusers `check_inputs` habit).

The limits are the ones the API checked at submission: every model's in `jobcontract.video`, the
model's own (frame rule, sides, token limit) in its spec. The prompt length is counted in T5 tokens
with the model's own tokenizer, which is cheap to load.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from jobcontract import video
from jobcontract.records import Item
from jobimage.errors import ValidationError
from jobimage.models import spec_for


def token_count(tokenizer: Any, text: str) -> int:
    """T5 tokens of `text` including the closing `</s>`, as the pipeline counts them."""
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def check_params(values: dict[str, Any]) -> list[str]:
    """Problems with an item's numbers and text lengths, each naming the field and value; [] if fine."""
    found = {field: f"{values.get(field)!r} {why}" for field, why in video.problems(values).items()}
    shape = spec_for(str(values.get("model"))).problems(num_frames=values.get("num_frames"),
                                                        width=values.get("width"), height=values.get("height"))
    found.update({k: v for k, v in shape.items() if k not in found})
    return [f"{field}: {message}" for field, message in found.items()]


def check_item(item: Item, tokenizer: Any | None = None) -> list[str]:
    """Problems with an item, each naming the field and value; [] when it can run."""
    problems = check_params(asdict(item))
    spec = spec_for(item.model)
    if tokenizer is not None and not problems:
        for name in ("prompt", "negative_prompt"):
            n = token_count(tokenizer, getattr(item, name))
            if n > spec.max_prompt_tokens:
                problems.append(f"{name}: {n} T5 tokens is over {spec.family}'s limit of {spec.max_prompt_tokens}; "
                                "shorten it")
    return problems


def validate_item(item: Item, tokenizer: Any | None = None) -> None:
    """Raise `ValidationError` listing every problem with the item."""
    if problems := check_item(item, tokenizer):
        raise ValidationError(problems)
