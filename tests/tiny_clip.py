"""A tiny randomly initialised open_clip model for tests (no downloads).

``write_tiny_config(dir)`` writes ``tiny_clip.json`` (an open_clip model config: D=16, 32 px
images in a 4x4 grid of 8 px patches, one-layer towers, text context 16 with the standard
tokenizer); ``write_tiny_weights(path, config)`` writes a random-init checkpoint for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 32,
        "head_width": 16,
        "layers": 1,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "mlp_ratio": 2.0,
    },
}


def write_tiny_config(directory: Path, stem: str = "tiny_clip", **overrides) -> Path:
    cfg = json.loads(json.dumps(TINY_CFG))
    for key, value in overrides.items():  # e.g. embed_dim=24, or vision_cfg={...}
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = Path(directory) / f"{stem}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def write_tiny_weights(path: Path, config: Path, seed: int = 0) -> Path:
    """A random-init checkpoint of the model in ``config``: .safetensors, or torch.save for .pt/.bin."""
    open_clip.add_model_config(Path(config))
    torch.manual_seed(seed)
    model = open_clip.create_model(Path(config).stem, pretrained=None)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return path
