"""DINO ViT-B/16 image features, the model VBench's *subject consistency* uses (timm, local weights only).

VBench loads ``torch.hub.load("facebookresearch/dino:main", "dino_vitb16")`` and feeds it every
frame through ``dino_transform(224)`` (``vbench/utils.py``):

- ``Resize(224)``: shortest side to 224 px, aspect ratio kept, **no** centre crop, bilinear, on the
  float tensor of the decoded uint8 frame (VBench pins ``torchvision<0.16``, where resizing a
  tensor does not antialias: ``antialias=False`` here by default);
- ``/ 255``, then ImageNet normalisation (mean ``0.485, 0.456, 0.406``, std ``0.229, 0.224, 0.225``);
- the model's output is the ``[CLS]`` token after the final LayerNorm, L2-normalised.

The same network is built here with timm (``vit_base_patch16_224.dino``: the DINO checkpoint under
timm's names, which are also the names of the original ``dino_vitbase16_pretrain.pth``). Frames
that are not square give a patch grid other than 14 × 14; the position embeddings are then
interpolated exactly as DINO's ``interpolate_pos_encoding`` does (bicubic, ``scale_factor`` =
``(grid + 0.1) / 14``), not as timm's ``dynamic_img_size`` would, so the features match VBench's.

Weights are loaded from local files only, never downloaded: ``weights=PATH`` (a ``.safetensors``
file, or a ``.pth``/``.bin`` state dict read weights-only), else the first of
(see :func:`cached_dino_weights`): the Hugging Face hub cache of timm's repository
(``timm/vit_base_patch16_224.dino``), torch.hub's checkpoint cache
(``$TORCH_HOME/hub/checkpoints/dino_vitbase16_pretrain.pth``, where VBench's ``torch.hub.load``
puts it) and VBench's own cache (``$VBENCH_CACHE_DIR``, default ``~/.cache/vbench``,
``dino_model/dino_vitbase16_pretrain.pth``). ``pretrained=False`` builds a randomly initialised model
(tests only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from .base import EncoderError, l2n, one_line, resolve_device

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vit_base_patch16_224.dino"
IMAGE_SIZE = 224  # dino_transform(224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# timm's file names on the hub, safetensors first (timm.models._hub)
HF_FILES = ("model.safetensors", "pytorch_model.bin")
# the original checkpoint (facebookresearch/dino hubconf.py), as torch.hub and VBench keep it
DINO_ORIGINAL_FILE = "dino_vitbase16_pretrain.pth"

FEATURES_NAME = "DINO ViT-B/16"



def _base_name(model_name: str) -> str:
    return str(model_name).split(".", 1)[0]


def is_vbench_model(model_name: str) -> bool:
    """Is ``model_name`` the network VBench uses (timm's ViT-B/16 with the DINO tag, or no tag)?"""
    name = str(model_name)
    return name in (DEFAULT_MODEL, _base_name(DEFAULT_MODEL))


def hub_repo_id(model_name: str = DEFAULT_MODEL) -> str | None:
    """The Hugging Face repository timm loads ``model_name``'s pretrained weights from, or ``None``."""
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:
        return f"timm/{model_name}" if "." in str(model_name) else None
    try:
        cfg = get_pretrained_cfg(str(model_name))
    except Exception:  # noqa: BLE001 - an unknown name simply has no pretrained entry
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return str(hub_id) if hub_id else None


def _hf_cache_dir(cache_dir: str | os.PathLike | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants  # read at call time: tests point it elsewhere

    return str(constants.HF_HUB_CACHE)


def _torch_hub_checkpoint() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / DINO_ORIGINAL_FILE


def _vbench_checkpoint() -> Path:
    root = os.environ.get("VBENCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vbench")
    return Path(root) / "dino_model" / DINO_ORIGINAL_FILE


def cached_dino_weights(
    model_name: str = DEFAULT_MODEL, *, cache_dir: str | os.PathLike | None = None
) -> str | None:
    """A local checkpoint of ``model_name`` that needs no network, or ``None``. Never downloads.

    Looked up in order: the Hugging Face hub cache (``cache_dir``, default huggingface_hub's
    ``HF_HUB_CACHE``) of timm's repository for the model (``model.safetensors``, then
    ``pytorch_model.bin``); for DINO ViT-B/16 only, also ``dino_vitbase16_pretrain.pth`` in
    torch.hub's checkpoint folder and in VBench's cache folder.
    """
    repo_id = hub_repo_id(model_name)
    if repo_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm and open_clip depend on it
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            root = _hf_cache_dir(cache_dir)
            for filename in HF_FILES:
                try:
                    hit = try_to_load_from_cache(repo_id, filename, cache_dir=root)
                except Exception:  # noqa: BLE001 - a broken cache is no cache
                    hit = None
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    if is_vbench_model(model_name):
        for path in (_torch_hub_checkpoint(), _vbench_checkpoint()):
            if path.is_file() and path.stat().st_size > 0:
                return str(path)
    return None


def missing_weights_reason(model_name: str = DEFAULT_MODEL) -> str:
    """One line: where DINO weights were looked for (for notes and errors)."""
    repo_id = hub_repo_id(model_name) or f"timm/{model_name}"
    return f"DINO weights not found in the Hugging Face cache ({repo_id})"


def weights_hint(model_name: str = DEFAULT_MODEL) -> str:
    return (
        "pass --dino-weights PATH (a .safetensors or .pth state dict, e.g. "
        f"{DINO_ORIGINAL_FILE}), or run once on a connected machine: "
        f"python -c \"import timm; timm.create_model('{model_name}', pretrained=True)\""
    )


def _unwrap_state_dict(sd: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Original DINO training checkpoints (``teacher``/``student`` with ``backbone.`` keys) and
    checkpoints with a projection head → the backbone's state dict."""
    keys = list(sd)
    for prefix in ("backbone.", "module.backbone.", "module."):
        if any(k.startswith(prefix) for k in keys) and all(
            k.startswith(prefix) or k.startswith(("head.", "module.head.")) for k in keys
        ):
            sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    head = getattr(model, "head", None)
    if isinstance(head, torch.nn.Identity):  # num_classes=0: a DINO/ImageNet head is not ours
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    return sd


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file → state dict, weights-only. Besides plain state dicts (and ``{"state_dict":
    ...}``), takes the ``teacher`` of an original DINO training checkpoint and ``{"model": ...}``."""
    from .clip import _read_state_dict  # the project's weights-only reader (never unpickles objects)

    try:
        return _read_state_dict(path)
    except ValueError as e:
        if path.suffix.lower() == ".safetensors" or "not a plain state dict" not in str(e):
            raise
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - the first reader's message says it better
            raise e from None
        for key in ("teacher", "model"):
            sd = raw.get(key) if isinstance(raw, dict) else None
            if (
                isinstance(sd, dict)
                and sd
                and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
            ):
                return dict(sd)
        raise e from None


def encode_batched(frames, dim: int, batch_size: int, forward) -> torch.Tensor:
    """``forward(list of same-shape frames) -> [n, dim]`` over ``frames`` in batches of at most
    ``batch_size`` (frames of one shape together) → ``[T, dim]`` float32 on the CPU, L2-normalised,
    in the frames' order, under ``torch.no_grad()``."""
    rgbs = as_rgb_frames(frames)
    if not rgbs:
        return torch.zeros(0, dim)
    out: list[torch.Tensor | None] = [None] * len(rgbs)
    with torch.no_grad():
        for start in range(0, len(rgbs), batch_size):
            groups: dict[tuple[int, ...], list[int]] = {}
            for i in range(start, min(start + batch_size, len(rgbs))):
                groups.setdefault(rgbs[i].shape, []).append(i)
            for members in groups.values():
                feats = l2n(forward([rgbs[i] for i in members]).float()).cpu()
                for j, i in enumerate(members):
                    out[i] = feats[j]
    return torch.stack(out)  # type: ignore[arg-type]


def as_rgb_frames(frames) -> list[np.ndarray]:
    """``[T, H, W, 3]`` uint8 (NumPy or torch) or a sequence of ``[H, W, 3]`` frames → list of
    contiguous uint8 ``[H, W, 3]`` arrays (grey frames are repeated to 3 channels, alpha dropped)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"expected frames [T, H, W, 3], got an array of shape {tuple(frames.shape)}")
        seq: Sequence = list(frames)
    else:
        seq = list(frames)
    out = []
    for f in seq:
        a = np.asarray(f)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"expected an [H, W, 3] RGB frame, got shape {tuple(a.shape)}")
        if a.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {a.dtype}")
        out.append(np.ascontiguousarray(a[:, :, :3]))
    return out


class DinoFeatures:
    """DINO ViT image features ``[T, D]`` (L2-normalised ``[CLS]`` tokens) with VBench's preprocessing.

    ``model_name`` is a timm model name (default ``vit_base_patch16_224.dino``); ``model_kwargs``
    go to ``timm.create_model`` (e.g. ``depth=2`` for a small test model). Weights: ``weights``
    (a local file), else, with ``pretrained``, a local cache (:func:`cached_dino_weights`; its
    absence is an :class:`EncoderError`, nothing is downloaded), else random initialisation.
    """

    name = "dino"

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        image_size: int = IMAGE_SIZE,
        antialias: bool = False,
        model_kwargs: dict | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        try:
            import timm
        except ImportError as e:
            raise EncoderError(f"DINO features need timm (pip install timm): {one_line(e)}") from e
        self.model_name = str(model_name)
        self.batch_size = max(1, int(batch_size))
        self.image_size = int(image_size)
        self.antialias = bool(antialias)
        self.device = resolve_device(device)

        ckpt: Path | None = None
        if weights is not None and str(weights) != "":
            ckpt = Path(weights).expanduser()
            if not ckpt.is_file():
                raise EncoderError(f"DINO weights file not found: {ckpt}")
        elif pretrained:
            cached = cached_dino_weights(self.model_name, cache_dir=cache_dir)
            if not cached:
                raise EncoderError(f"{missing_weights_reason(self.model_name)}; {weights_hint(self.model_name)}")
            ckpt = Path(cached)
        else:
            log.warning("DINO model %s has no weights: randomly initialised (tests only)", self.model_name)
        self.weights: str | None = str(ckpt.resolve()) if ckpt is not None else None

        state: dict[str, torch.Tensor] | None = None
        if ckpt is not None:
            try:
                state = _read_checkpoint(ckpt)
            except Exception as e:  # noqa: BLE001 - corrupt file, pickle refused, not a state dict ...
                raise EncoderError(f"cannot read DINO weights {ckpt}: {one_line(e)}") from e
        try:
            model = timm.create_model(self.model_name, pretrained=False, num_classes=0, **(model_kwargs or {}))
        except Exception as e:  # noqa: BLE001 - unknown model name, bad kwargs
            raise EncoderError(f"cannot build timm model '{self.model_name}': {one_line(e)}") from e
        if state is not None:
            try:
                model.load_state_dict(_unwrap_state_dict(state, model), strict=True)
            except Exception as e:  # noqa: BLE001 - missing keys, shape mismatch ...
                raise EncoderError(
                    f"DINO weights {ckpt} do not load into timm model '{self.model_name}': {one_line(e)}"
                ) from e
            log.info("DINO %s: weights loaded from %s", self.model_name, ckpt)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.to(self.device)
        self.dim = int(getattr(model, "num_features", 0) or getattr(model, "embed_dim", 0))
        self._exact = self._is_plain_vit(model)
        if not self._exact:
            log.info("timm model %s is not a plain ViT with a class token: its own forward is used", model_name)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    # -- description ---------------------------------------------------------------------------

    @property
    def vbench_model(self) -> bool:
        """DINO ViT-B/16 with trained weights: the features VBench's subject consistency uses."""
        return is_vbench_model(self.model_name) and self.weights is not None

    @property
    def features_name(self) -> str:
        if is_vbench_model(self.model_name):
            label = f"{FEATURES_NAME} (timm {DEFAULT_MODEL})"
        else:
            label = f"timm {self.model_name}"
        return label if self.weights is not None else f"{label}, random init"

    def config(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_name,
            "weights": self.weights,
            "dim": self.dim,
            "image_size": self.image_size,
            "antialias": self.antialias,
            "device": str(self.device),
        }

    # -- forward -------------------------------------------------------------------------------

    @staticmethod
    def _is_plain_vit(model: torch.nn.Module) -> bool:
        try:
            from timm.models.vision_transformer import VisionTransformer
        except ImportError:  # pragma: no cover
            return False
        return (
            isinstance(model, VisionTransformer)
            and getattr(model, "cls_token", None) is not None
            and getattr(model, "reg_token", None) is None
            and getattr(model, "pos_embed", None) is not None
            and not getattr(model, "no_embed_class", False)
            and getattr(model, "num_prefix_tokens", 1) == 1
            and getattr(model, "global_pool", "token") == "token"
            and isinstance(getattr(model, "fc_norm", torch.nn.Identity()), torch.nn.Identity)
            and isinstance(getattr(model.patch_embed, "proj", None), torch.nn.Conv2d)
        )

    def _pos_embed(self, h: int, w: int, npatch: int) -> torch.Tensor:
        """DINO's ``interpolate_pos_encoding`` for an input of ``h × w`` pixels (facebookresearch/dino
        ``vision_transformer.py``): bicubic, ``scale_factor = (h // p + 0.1) / gh``, no antialias."""
        pos = self.model.pos_embed
        n = pos.shape[1] - 1
        if npatch == n and w == h:
            return pos
        key = (h, w)
        hit = self._pos_cache.get(key)
        if hit is not None:
            return hit
        gh, gw = (int(s) for s in self.model.patch_embed.grid_size)
        ph, pw = (int(s) for s in self.model.patch_embed.patch_size)
        dim = pos.shape[-1]
        h0, w0 = h // ph + 0.1, w // pw + 0.1  # DINO adds 0.1 against floating-point error
        patch = F.interpolate(
            pos[:, 1:].reshape(1, gh, gw, dim).permute(0, 3, 1, 2),
            scale_factor=(h0 / gh, w0 / gw),
            mode="bicubic",
        )
        if (patch.shape[-2], patch.shape[-1]) != (int(h0), int(w0)):  # pragma: no cover - DINO asserts it
            raise EncoderError(f"position embedding interpolation gave {tuple(patch.shape[-2:])}")
        patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
        out = torch.cat((pos[:, :1], patch), dim=1)
        if len(self._pos_cache) >= 8:
            self._pos_cache.clear()
        self._pos_cache[key] = out
        return out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if not self._exact:
            out = m(x)
            return out.flatten(1) if out.ndim > 2 else out
        b, _, h, w = x.shape
        t = m.patch_embed.proj(x).flatten(2).transpose(1, 2)  # [B, h0*w0, D]
        t = m.patch_embed.norm(t)
        t = torch.cat((m.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + self._pos_embed(h, w, t.shape[1] - 1)
        t = m.pos_drop(t)
        for name in ("patch_drop", "norm_pre"):
            layer = getattr(m, name, None)
            if layer is not None:
                t = layer(t)
        t = m.blocks(t)
        t = m.norm(t)
        return t[:, 0]

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-shape uint8 ``[H, W, 3]`` frames → ``[B, 3, 224, W']`` (VBench's ``dino_transform``)."""
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        x = TF.resize(x, self.image_size, interpolation=InterpolationMode.BILINEAR, antialias=self.antialias)
        x = x.float().div(255.0)
        return (x - self._mean) / self._std

    def encode(self, frames) -> torch.Tensor:
        """Frames (``[T, H, W, 3]`` uint8 RGB, or a sequence of them) → ``[T, D]`` float32 on the CPU,
        L2-normalised."""
        return encode_batched(frames, self.dim, self.batch_size,
                              lambda batch: self._forward(self.preprocess(batch)))

    def __repr__(self) -> str:
        return f"DinoFeatures({self.model_name!r}, weights={self.weights!r}, device={str(self.device)!r})"


def dino_status(model_name: str = DEFAULT_MODEL, *, cache_dir: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Can DINO ``model_name`` run from local weights now? → (yes/no, one-line reason). No network."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False, "timm is not installed (pip install timm)"
    cached = cached_dino_weights(model_name, cache_dir=cache_dir)
    if cached:
        return True, f"DINO weights for {model_name} are cached at {cached}"
    return False, missing_weights_reason(model_name)


__all__ = [
    "DEFAULT_MODEL",
    "DinoFeatures",
    "as_rgb_frames",
    "cached_dino_weights",
    "dino_status",
    "hub_repo_id",
    "is_vbench_model",
]
