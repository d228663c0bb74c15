"""The `tiny` Mochi: its spec; real diffusers classes, a small config, random weights, a local tokenizer.

It exists so demos and tests run the real load and generation path on a CPU without
downloading anything. Its videos are noise. It is built once into `<model_dir>/tiny/`
(in a temp folder, renamed into place, READY written last) and then loaded with
`from_pretrained` exactly like `mochi-1-preview`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from dataclasses import replace

from jobimage.model_folder import READY_NAME
from jobimage.models.mochi import MOCHI
from jobimage.models.spec import Defaults

TINY_NAME = "tiny"
# A Mochi in shape (same frame rule, sizes and token limit), cheap by default: ~3 s on two CPU cores;
# 848x480 works too but costs ~12 s (attention over ~9,500 tokens).
TINY = replace(MOCHI, name=TINY_NAME,
               defaults=Defaults(num_frames=31, num_inference_steps=8, guidance_scale=4.5, size="432x240"),
               notice="tiny is a random-weight demo model: its videos are noise, by design")
MAX_SEQUENCE_LENGTH = TINY.max_prompt_tokens
TINY_SEED = 20241022
# Bumped whenever the config below changes, so an old tiny folder is rebuilt.
TINY_VERSION = 2

# Words the tokenizer learns from; any other text still tokenizes (unigram pieces + <unk>).
_CORPUS = (
    "a cat walks on the beach at sunset; a dog runs through a green field in slow motion. "
    "the camera pans over a city at night with neon lights and rain. waves crash on rocks. "
    "an astronaut rides a horse on the moon, cinematic, 4k, detailed, colorful, calm water. "
    "birds fly above mountains and forests while clouds move across the blue sky quickly. "
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()[]"
)

# Small on purpose: one 16-wide head (CPU attention time grows with heads), one block, and a
# VAE whose full-resolution stages have no convolutions (layers 0) and 4 channels, so 848x480
# decodes in seconds on a CPU.
TRANSFORMER_CONFIG = dict(
    patch_size=2, num_attention_heads=1, attention_head_dim=16, num_layers=1,
    pooled_projection_dim=32, in_channels=12, text_embed_dim=32, time_embed_dim=32,
    activation_fn="swiglu", max_sequence_length=MAX_SEQUENCE_LENGTH,
)
VAE_CONFIG = dict(
    in_channels=15, out_channels=3,
    encoder_block_out_channels=(32, 32, 32, 32), decoder_block_out_channels=(4, 8, 8, 32),
    latent_channels=12, layers_per_block=(0, 0, 0, 0, 1),
    temporal_expansions=(1, 2, 3), spatial_expansions=(2, 2, 2),
    add_attention_block=(False, False, False, False, False),
)
T5_CONFIG = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, relative_attention_num_buckets=8,
    feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
)


def _build_tokenizer(vocab_size: int = 256):
    """A T5 tokenizer (unigram, `</s>` appended, `<pad>` = 0) trained on a few sentences."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import T5TokenizerFast

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator([_CORPUS] * 4, vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                           unk_token="<unk>", show_progress=False)
    sp.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                           special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=sp._tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=MAX_SEQUENCE_LENGTH)


def build_tiny_pipeline():
    """The tiny `MochiPipeline` in memory, deterministic for a given TINY_SEED."""
    import torch
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = _build_tokenizer()
    torch.manual_seed(TINY_SEED)
    transformer = MochiTransformer3DModel(**TRANSFORMER_CONFIG)
    # pos_frequencies starts at zero, which would make RoPE a no-op; give it real values.
    with torch.no_grad():
        transformer.pos_frequencies.normal_(0.0, 0.5)
    vae = AutoencoderKLMochi(**VAE_CONFIG)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **T5_CONFIG))
    scheduler = FlowMatchEulerDiscreteScheduler()
    return MochiPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         transformer=transformer)


def ensure_tiny_model(model_dir: Path) -> Path:
    """Build `<model_dir>/tiny/` unless it is already there; safe to call from several processes."""
    model_dir = Path(model_dir)
    dest = model_dir / TINY_NAME
    if _is_current(dest):
        return dest
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=model_dir))
    try:
        build_tiny_pipeline().save_pretrained(tmp, safe_serialization=True)
        (tmp / READY_NAME).write_text(json.dumps({"model": TINY_NAME, "tiny_version": TINY_VERSION}) + "\n")
        if _is_current(dest):  # another process won the race while we built
            return dest
        if dest.exists():  # an outdated or broken tiny: move it aside, then replace
            old = Path(tempfile.mkdtemp(prefix=".tiny-old-", dir=model_dir))
            try:
                os.replace(dest, old / TINY_NAME)
            except FileNotFoundError:
                pass
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _is_current(dest):  # lost a rename race to a builder of an equal model: fine
                raise
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_current(folder: Path) -> bool:
    try:
        ready = json.loads((folder / READY_NAME).read_text())
    except (OSError, ValueError):
        return False
    return ready.get("tiny_version") == TINY_VERSION
