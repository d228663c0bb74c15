#!/usr/bin/env python
"""A Mochi model folder with random weights, laid out as `t2v model sync` leaves it, READY last.

For timing the job pod end to end (`pod.py`) on a GPU machine that cannot download the real
weights: a step takes the same time whatever the weights' values. At full size it is the released
model's shapes (transformer 10B, T5-XXL 4.7B parameters, about 30 GB in bf16) with the tiny
model's tokenizer (any text tokenizes; the token ids stay below T5's vocabulary). `--small` builds
the tiny model's shapes under the same name, to check the script and pod.py on a CPU.

  python scripts/bench/random_mochi.py --out /models             # /models/mochi-1-preview, on the GPU
  python scripts/bench/random_mochi.py --out /tmp/m --small      # seconds on a CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from jobimage.model_folder import READY_NAME  # noqa: E402
from jobimage.models import tiny  # noqa: E402

# google/t5-v1_1-xxl's encoder, which Mochi-1 preview ships as its text encoder.
T5_XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, relative_attention_num_buckets=32,
              feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True, vocab_size=32128,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def build(out: Path, name: str, small: bool, device: torch.device) -> dict:
    """Write `<out>/<name>/` and return what it took."""
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    t0 = time.perf_counter()
    tokenizer = tiny._build_tokenizer()
    t5 = {**tiny.T5_CONFIG, "vocab_size": len(tokenizer)} if small else T5_XXL
    dtype = torch.float32 if small else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with device:
            transformer = MochiTransformer3DModel(**(tiny.TRANSFORMER_CONFIG if small else {}))
            with torch.no_grad():
                transformer.pos_frequencies.normal_(0.0, 0.5)  # zeros would make RoPE a no-op
            vae = AutoencoderKLMochi(**(tiny.VAE_CONFIG if small else {}))
            text_encoder = T5EncoderModel(T5Config(**t5))
    finally:
        torch.set_default_dtype(previous)
    pipe = MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                         tokenizer=tokenizer, transformer=transformer)
    built = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-random-", dir=out))
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / READY_NAME).write_text(json.dumps({"model": name, "random_weights": True, "small": small}) + "\n")
    dest = out / name
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    return {"folder": str(dest), "bytes": size, "build_s": round(built, 1),
            "save_s": round(time.perf_counter() - t0 - built, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the model directory (T2V_MODEL_DIR)")
    parser.add_argument("--name", default="mochi-1-preview")
    parser.add_argument("--small", action="store_true", help="the tiny model's shapes (CPU check)")
    parser.add_argument("--device", help="where to initialise the weights (default: cuda if present, else cpu)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(json.dumps(build(args.out, args.name, args.small, device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
