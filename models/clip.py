"""CLIP encoder adapter (open_clip).

Frames go through the model's own preprocessing (resize shortest side, centre crop, normalise with
the model's mean/std), done with torch ops on the whole batch. The vision tower returns the pooled
image embedding (``global_``) and its patch tokens after ``ln_post``; the tokens are projected with
``visual.proj`` into the joint image-text space, so a text query compares with every patch.

Weights come from, in order: ``weights`` (a local ``.safetensors`` file, or a ``.pt``/``.bin``
state dict read with ``torch.load(weights_only=True)``: never arbitrary unpickling), the local
cache of the pretrained tag (Hugging Face hub cache or open_clip's ``~/.cache/clip``), or a
download of the tag through open_clip (refused when ``HF_HUB_OFFLINE``/``STREAMVID_OFFLINE`` is
set). ``model`` is an open_clip model name or a path to an open_clip model-config JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from streamvid.types import Encoded

from .base import ANSI_ESCAPE, EncoderError, l2n, one_line, resolve_device

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"

# open_clip's file names on the hub (open_clip.constants; repeated so older versions work too)
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
TOP_PROMPTS = (
    "a photo of a person wearing a {c} shirt",
    "a photo of a person wearing a {c} top",
    "a photo of a person wearing a {c} jacket",
)
BOTTOM_PROMPTS = (
    "a photo of a person wearing {c} trousers",
    "a photo of a person wearing {c} pants",
    "a photo of a person wearing {c} shorts",
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def offline_mode() -> str | None:
    """The environment variable that forbids downloads (``HF_HUB_OFFLINE``, ...), or ``None``."""
    for var in ("STREAMVID_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(os.environ.get(var)):
            return var
    return None





# ----------------------------------------------------------------------------------------------
# model names and pretrained weights
# ----------------------------------------------------------------------------------------------


def resolve_model_name(model: str) -> tuple[str, bool]:
    """``model`` → (open_clip model name, is a custom config file).

    A path to a model-config JSON (``{"embed_dim", "vision_cfg", "text_cfg"}``) is registered with
    ``open_clip.add_model_config`` under its file stem.
    """
    model = str(model)
    looks_like_file = model.lower().endswith(".json") or (os.sep in model and os.path.isfile(model))
    if looks_like_file:
        path = Path(model).expanduser()
        if not path.is_file():
            raise EncoderError(f"CLIP model config not found: {path}")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EncoderError(f"cannot read CLIP model config {path}: {one_line(e)}") from e
        if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
            raise EncoderError(
                f"CLIP model config {path} is not an open_clip model config "
                "(needs embed_dim, vision_cfg and text_cfg at the top level)"
            )
        name = path.stem
        known = open_clip.get_model_config(name)
        if known is not None and known != cfg:
            log.warning("CLIP model config %s replaces the open_clip model config %r", path, name)
        open_clip.add_model_config(path.resolve())
        return name, True
    name = model.replace("/", "-")
    if name not in open_clip.list_models():
        raise EncoderError(
            f"unknown CLIP model '{model}': use an open_clip model name (open_clip.list_models()) "
            "or a path to an open_clip model-config JSON"
        )
    return name, False


def pretrained_cfg(model: str, pretrained: str | None) -> dict:
    """open_clip's pretrained entry for (model, tag), ``{}`` when open_clip does not know it."""
    if not pretrained:
        return {}
    try:
        return dict(open_clip.get_pretrained_cfg(model, pretrained) or {})
    except Exception:  # noqa: BLE001 - an odd tag is simply unknown
        return {}


def _safe_alternatives(filename: str) -> list[str]:
    # mirrors open_clip.pretrained._get_safe_alternatives
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def hub_files(cfg: dict) -> tuple[str, list[str]] | None:
    """(hub repo id, candidate file names in open_clip's order) for a pretrained entry, or None."""
    hf_hub = cfg.get("hf_hub") or ""
    if not hf_hub:
        return None
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    return repo_id, [*_safe_alternatives(filename), filename]


def openclip_url_cache_file(url: str) -> Path:
    """Where open_clip's URL downloader keeps ``url`` (``~/.cache/clip/<basename>``)."""
    return Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)


def cached_pretrained_file(model: str, pretrained: str | None) -> str | None:
    """A local checkpoint for (model, tag) that needs no network, or ``None``.

    Looked up, in order: the entry's ``file``; the Hugging Face hub cache
    (``huggingface_hub.try_to_load_from_cache(repo_id, filename)`` for the ``.safetensors``
    alternative, then the named file); open_clip's URL cache ``~/.cache/clip/<basename(url)>``
    (skipped when it is a TorchScript archive, which cannot be read weights-only).
    """
    cfg = pretrained_cfg(model, pretrained)
    if not cfg:
        return None
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return str(cfg["file"])
    hub = hub_files(cfg)
    if hub is not None:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, names = hub
            for name in names:
                try:
                    hit = try_to_load_from_cache(repo_id, name)
                except Exception:  # noqa: BLE001 - a broken cache is no cache
                    hit = None
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    url = cfg.get("url") or ""
    if url:
        target = openclip_url_cache_file(url)
        if target.is_file() and target.stat().st_size > 0:
            if not _is_torchscript(target):
                return str(target)
            log.debug("%s is a TorchScript archive (not loadable weights-only); ignored", target)
    return None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (OpenAI's original .pt files) rather than a plain state dict."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def download_hint(model: str, pretrained: str | None) -> str:
    return (
        'run once on a connected machine: python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{model}', pretrained='{pretrained}')\" or pass --weights PATH"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file → state dict, without unpickling arbitrary objects."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        checkpoint = load_file(str(path), device="cpu")
    else:
        # weights_only: tensors and plain containers only; no fallback to full unpickling
        try:
            with warnings.catch_warnings():  # torch's pickle-protocol note would be a 2nd stderr line
                warnings.simplefilter("ignore")
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's text advises weights_only=False (unsafe) and carries ANSI codes: keep its detail
            m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", ANSI_ESCAPE.sub("", str(e)))
            detail = f" ({' '.join(m.group(1).split())})" if m else ""
            raise ValueError(
                f"not a plain state dict of tensors, or corrupt{detail}; "
                "streamvid never unpickles other objects (use .safetensors)"
            ) from None
        except RuntimeError as e:  # e.g. a truncated zip archive
            raise ValueError(f"corrupt PyTorch file ({ANSI_ESCAPE.sub('', str(e)).split('. ')[0]})") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError("the file holds no state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()):
        raise ValueError("the file is not a plain state dict of tensors")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    return checkpoint


def _apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Load a state dict into an open_clip model (open_clip's load_checkpoint conversions, strict)."""
    from open_clip import model as oc_model

    try:
        from open_clip.convert import convert_state_dict

        sd = convert_state_dict(model, sd)
    except ImportError:  # older open_clip
        pass
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = oc_model.convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        target = getattr(model, key, None)
        if key in sd and isinstance(target, torch.Tensor) and target.ndim != sd[key].ndim:
            sd[key] = sd[key].reshape(target.shape)
    if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None and "logit_scale" in sd:
        sd["logit_bias"] = torch.zeros_like(sd["logit_scale"])
    sd.pop("text.transformer.embeddings.position_ids", None)
    oc_model.resize_pos_embed(sd, model)
    if hasattr(oc_model, "resize_text_pos_embed"):
        oc_model.resize_text_pos_embed(sd, model)
    model.load_state_dict(sd, strict=True)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _no_random_init_warning():
    """Silence open_clip's "No pretrained weights loaded ... initialized randomly" (a root-logger
    warning from ``create_model(pretrained=None)``): the checkpoint is loaded right after, and a
    real random init gets our own warning."""
    filt = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)


# ----------------------------------------------------------------------------------------------
# the encoder
# ----------------------------------------------------------------------------------------------


class ClipEncoder:
    """open_clip ViT encoder: patch tokens and image/text embeddings in one joint space."""

    name = "clip"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model_arg = str(model)
        self.batch_size = max(1, int(batch_size))
        self.device = resolve_device(device)
        self.precision = "fp16" if self.device.type == "cuda" else "fp32"

        arch, custom = resolve_model_name(self.model_arg)
        self.arch = arch
        if custom:  # recorded in config() and snapshots: must still resolve from another directory
            self.model_arg = str(Path(self.model_arg).expanduser().resolve())

        # which checkpoint, and the preprocessing that goes with the tag
        pcfg = pretrained_cfg(arch, pretrained)
        ckpt: Path | None = None
        if weights is not None and str(weights) != "":
            ckpt = Path(weights).expanduser()
            if not ckpt.is_file():
                raise EncoderError(f"CLIP weights file not found: {ckpt}")
            self.weights: str | None = str(ckpt.resolve())
            self.pretrained: str | None = None
        elif pretrained:
            self.weights = None
            self.pretrained = pretrained
            if pcfg:
                ckpt = self._pretrained_checkpoint(arch, pretrained, pcfg)
            elif os.path.isfile(pretrained):  # open_clip also takes a file path here
                ckpt = Path(pretrained)
            else:
                tags = open_clip.list_pretrained_tags_by_model(arch)
                known = (
                    f"known tags: {', '.join(tags)}" if tags else "open_clip has no pretrained tags for it"
                )
                raise EncoderError(
                    f"no pretrained CLIP weights '{pretrained}' for model '{self.model_arg}' ({known}); "
                    "pass --weights PATH"
                )
        else:
            self.weights = None
            self.pretrained = None
            log.warning("CLIP model %s has no weights: randomly initialised (tests only)", self.model_arg)

        state: dict[str, torch.Tensor] | None = None
        if ckpt is not None:  # read (and reject a bad file) before building the model
            try:
                state = _read_state_dict(ckpt)
            except Exception as e:  # noqa: BLE001 - corrupt file, pickle refused, not a state dict ...
                raise EncoderError(f"cannot read CLIP weights {ckpt}: {one_line(e)}") from e

        force_pp = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
        try:
            with _no_random_init_warning():  # we load the weights ourselves, just below
                net = open_clip.create_model(
                    arch,
                    pretrained=None,
                    precision=self.precision,
                    device=self.device,
                    force_preprocess_cfg=force_pp or None,
                    force_quick_gelu=bool(pcfg.get("quick_gelu", False)),  # e.g. OpenAI weights
                    pretrained_hf=False,  # no separate text-tower download; the checkpoint has it all
                )
        except Exception as e:  # noqa: BLE001
            raise EncoderError(f"cannot build CLIP model '{self.model_arg}': {one_line(e)}") from e

        if state is not None:
            try:
                _apply_state_dict(net, state)
            except Exception as e:  # noqa: BLE001 - missing keys, shape mismatch ...
                raise EncoderError(
                    f"CLIP weights {ckpt} do not load into model '{self.model_arg}': {one_line(e)}"
                ) from e
            log.info("CLIP %s: weights loaded from %s", self.model_arg, ckpt)

        visual = getattr(net, "visual", None)
        if (
            not isinstance(visual, open_clip.transformer.VisionTransformer)
            or getattr(visual, "attn_pool", None) is not None
            or getattr(visual, "pool_type", "tok") not in ("tok", "avg")
            or getattr(visual, "proj", None) is None
        ):
            raise EncoderError(
                f"CLIP model '{self.model_arg}' is not supported: the clip encoder needs an open_clip "
                "ViT vision tower with a token/avg pool and a projection"
            )
        visual.output_tokens = True  # forward → (pooled projected, patch tokens after ln_post)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.model = net
        self.visual = visual
        self.dim = int(visual.proj.shape[1])
        gh, gw = visual.grid_size
        self.tokens_per_frame = int(gh * gw)
        self._dtype = visual.conv1.weight.dtype
        self._tokenizer = open_clip.get_tokenizer(arch)
        self._setup_preprocess()
        self._colour_bank: dict[str, torch.Tensor] | None = None
        log.info(
            "CLIP encoder %s (%s) on %s/%s: D=%d, %d tokens per frame",
            self.model_arg,
            self.weights or self.pretrained or "random init",
            self.device,
            self.precision,
            self.dim,
            self.tokens_per_frame,
        )

    # -- construction helpers ------------------------------------------------------------------

    def _pretrained_checkpoint(self, arch: str, tag: str, pcfg: dict) -> Path:
        cached = cached_pretrained_file(arch, tag)
        if cached:
            log.info("CLIP %s/%s: using cached weights %s", arch, tag, cached)
            return Path(cached)
        off = offline_mode()
        if off:
            raise EncoderError(
                f"CLIP weights for {arch}/{tag} are not cached and downloads are disabled ({off}=1); "
                + download_hint(arch, tag)
            )
        try:
            log.info("CLIP %s/%s: downloading weights", arch, tag)
            path = open_clip.pretrained.download_pretrained(pcfg)
        except Exception as e:  # noqa: BLE001
            raise EncoderError(
                f"cannot download CLIP weights for {arch}/{tag}: {one_line(e)}; " + download_hint(arch, tag)
            ) from e
        if not path:
            raise EncoderError(f"open_clip returned no file for CLIP weights {arch}/{tag}")
        return Path(path)

    def _setup_preprocess(self) -> None:
        cfg = dict(getattr(self.visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", self.visual.image_size)
        size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self._size = (int(size[0]), int(size[1]))
        self._interp = (
            InterpolationMode.BILINEAR
            if cfg.get("interpolation") == "bilinear"
            else InterpolationMode.BICUBIC
        )
        self._resize_mode = cfg.get("resize_mode", "shortest") or "shortest"
        mean = cfg.get("mean", getattr(self.visual, "image_mean", None)) or open_clip.OPENAI_DATASET_MEAN
        std = cfg.get("std", getattr(self.visual, "image_std", None)) or open_clip.OPENAI_DATASET_STD
        self._mean_rgb = tuple(float(m) for m in mean)
        self._mean = torch.tensor(self._mean_rgb, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor([float(s) for s in std], device=self.device).view(1, 3, 1, 1)
        # torch ops reproduce "shortest" (square target) and "squash"; anything else uses
        # open_clip's own PIL transform frame by frame
        self._torch_pp = self._resize_mode == "squash" or (
            self._resize_mode == "shortest" and self._size[0] == self._size[1]
        )
        self._pil_pp = None
        if not self._torch_pp:
            pp = open_clip.transform.PreprocessCfg(
                **{
                    k: v
                    for k, v in cfg.items()
                    if k in open_clip.transform.PreprocessCfg.__dataclass_fields__
                }
            )
            self._pil_pp = open_clip.transform.image_transform_v2(pp, is_train=False)

    # -- preprocessing -------------------------------------------------------------------------

    @staticmethod
    def _as_rgb(frame: np.ndarray) -> np.ndarray:
        a = np.asarray(frame)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise EncoderError(f"expected an [H, W, 3] RGB frame, got shape {tuple(a.shape)}")
        if a.shape[2] == 4:
            a = a[:, :, :3]
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(a)

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB frames → ``[B, 3, S, S]`` model input on the device (the model's preprocessing)."""
        rgbs = [self._as_rgb(f) for f in frames]
        out: list[torch.Tensor | None] = [None] * len(rgbs)
        if not self._torch_pp:
            from PIL import Image

            for i, a in enumerate(rgbs):
                out[i] = self._pil_pp(Image.fromarray(a)).unsqueeze(0).to(self.device)
            return torch.cat(out).to(self._dtype)  # type: ignore[arg-type]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(rgbs):
            groups.setdefault(a.shape, []).append(i)
        th, tw = self._size
        for idx in groups.values():
            x = torch.from_numpy(np.stack([rgbs[i] for i in idx])).to(self.device)
            x = x.permute(0, 3, 1, 2)  # [b, 3, H, W] uint8
            if self._resize_mode == "squash":
                x = TF.resize(x, [th, tw], interpolation=self._interp, antialias=True)
            else:  # shortest side → th, then centre crop (torchvision Resize(int) + CenterCrop)
                x = TF.resize(x, th, interpolation=self._interp, antialias=True)
                x = TF.center_crop(x, [th, tw])
            x = (x.float() / 255.0 - self._mean) / self._std
            for j, i in enumerate(idx):
                out[i] = x[j : j + 1]
        return torch.cat(out).to(self._dtype)  # type: ignore[arg-type]

    # -- the protocol --------------------------------------------------------------------------

    def config(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_arg,
            "pretrained": self.pretrained,
            "weights": self.weights,
            "dim": self.dim,
            "tokens_per_frame": self.tokens_per_frame,
            "device": str(self.device),
            "precision": self.precision,
        }

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.visual(x)
        if getattr(self.visual, "final_ln_after_pool", False):
            tokens = self.visual.ln_post(tokens)  # the pool path skipped it for the tokens
        tokens = tokens @ self.visual.proj
        return l2n(tokens.float()).cpu(), l2n(pooled.float()).cpu()

    def encode_frames(self, frames: Sequence[np.ndarray]) -> list[Encoded]:
        results: list[Encoded] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            with torch.inference_mode():
                tokens, pooled = self._forward(self.preprocess(chunk))
            # cloned outside inference mode: ordinary tensors the caller may modify in place
            results.extend(
                Encoded(tokens=tokens[i].clone(), global_=pooled[i].clone()) for i in range(len(chunk))
            )
        return results

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        return self.encode_frames([rgb])[0].global_

    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            ids = self._tokenizer(list(texts)).to(self.device)
            feats = l2n(self.model.encode_text(ids).float()).cpu()
        return feats.clone()

    def encode_text(self, text: str) -> torch.Tensor:
        return self._encode_texts([str(text)])[0].clone()

    # -- describe ------------------------------------------------------------------------------

    def _colours(self) -> dict[str, torch.Tensor]:
        if self._colour_bank is None:
            bank = {}
            for part, prompts in (("top", TOP_PROMPTS), ("bottom", BOTTOM_PROMPTS)):
                emb = self._encode_texts([p.format(c=c) for c in COLOURS for p in prompts])
                emb = emb.view(len(COLOURS), len(prompts), -1).mean(dim=1)  # prompt ensemble
                bank[part] = l2n(emb)
            self._colour_bank = bank
        return self._colour_bank

    def warm_up(self) -> None:
        """Pay the one-time costs now (the colour prompts' text embeddings, the first forward pass),
        not on a live stream's first entry: ``streamvid live``/``serve`` call it before starting."""
        self._colours()
        self.encode_frames([np.zeros((64, 64, 3), np.uint8)])

    def describe(self, crop: np.ndarray, mask: np.ndarray | None = None) -> str:
        """Zero-shot clothing colours: "person in red top and blue trousers".

        The upper half of the crop is scored against the top-colour prompts, the lower half
        against the bottom-colour prompts. Pixels outside ``mask`` are set to the model's mean
        colour (zero after normalisation) and the crop is trimmed to the mask's rows.
        """
        a = self._as_rgb(crop).copy()
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape == a.shape[:2] and m.any():
                a[~m] = np.asarray([round(v * 255) for v in self._mean_rgb], dtype=np.uint8)
                rows = np.flatnonzero(m.any(axis=1))
                a = a[rows[0] : rows[-1] + 1]
        h = a.shape[0]
        upper, lower = (a[: h // 2], a[h // 2 :]) if h >= 2 else (a, a)
        emb = [e.global_ for e in self.encode_frames([upper, lower])]
        bank = self._colours()
        top = COLOURS[int(torch.argmax(bank["top"] @ emb[0]))]
        bottom = COLOURS[int(torch.argmax(bank["bottom"] @ emb[1]))]
        return f"person in {top} top and {bottom} trousers"
