"""Choosing and creating the encoder: ``clip``, ``classic`` or ``auto``.

``auto`` picks CLIP when it can run without waiting on the network for long:

1. ``weights`` given → CLIP from that file (its errors propagate: the user asked for it);
2. the pretrained tag's checkpoint is already local (see :func:`streamvid.models.clip.cached_pretrained_file`:
   the Hugging Face hub cache via ``huggingface_hub.try_to_load_from_cache``, then open_clip's
   ``~/.cache/clip``) → CLIP, loaded without network;
3. downloads allowed (neither ``HF_HUB_OFFLINE`` nor ``STREAMVID_OFFLINE`` set) and a HEAD request
   to the hub for the checkpoint answers within the deadline → CLIP (the weights get downloaded);
4. otherwise the classic encoder, with a one-line note saying why and how to get CLIP weights.

Steps 2-3 run under one deadline (``timeout`` seconds; the HEAD request runs in a daemon thread).
Importing open_clip (about 2 s, needed for its table of pretrained weights) happens before the clock
starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.request

from streamvid.errors import one_line

from .base import Encoder, EncoderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
ENCODER_NAMES = ("auto", "clip", "classic")


def _probe(cfg: dict, deadline: float) -> tuple[bool, str]:
    """HEAD the checkpoint of a pretrained entry (hub first, like open_clip; else its URL)."""
    from . import clip as C

    hub = C.hub_files(cfg)
    if hub is not None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        repo_id, names = hub
        statuses = []
        for name in names:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, "the hub did not answer in time"
            url = hf_hub_url(repo_id, name)
            try:
                get_hf_file_metadata(url, token=False, timeout=remaining)
                return True, f"can be downloaded from {url}"
            except Exception as e:  # noqa: BLE001
                status = getattr(getattr(e, "response", None), "status_code", None)
                if status is None:  # no HTTP answer at all: DNS, refused, timeout ...
                    return False, f"the hub is unreachable ({one_line(e, 100)})"
                statuses.append(f"{name}: HTTP {status}")
        return False, f"the hub has no usable file for {repo_id} ({'; '.join(statuses)})"
    url = cfg.get("url") or ""
    if url:
        remaining = max(0.05, deadline - time.monotonic())
        try:
            req = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(req, timeout=remaining) as resp:  # noqa: S310 - https URL from open_clip
                if 200 <= resp.status < 400:
                    return True, f"can be downloaded from {url}"
                return False, f"{url} answered HTTP {resp.status}"
        except Exception as e:  # noqa: BLE001
            return False, f"{url} is unreachable ({one_line(e, 100)})"
    return False, "open_clip names no download location for them"


def clip_weights_status(
    model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, timeout: float = 3.0
) -> tuple[bool, str]:
    """Can CLIP ``model``/``pretrained`` get its weights now? → (yes/no, one-line reason).

    Never downloads; the only network access is one HEAD request per candidate file, in a daemon
    thread, abandoned at the deadline (``timeout`` seconds after open_clip is imported).
    """
    from . import clip as C  # imports open_clip

    deadline = time.monotonic() + max(0.0, float(timeout))
    try:
        arch, custom = C.resolve_model_name(model)
    except EncoderError as e:
        return False, str(e)
    label = f"CLIP weights for {model}/{pretrained}"
    cfg = C.pretrained_cfg(arch, pretrained)
    if not cfg:
        if pretrained and os.path.isfile(pretrained):
            return True, f"CLIP weights for {model} are the local file {pretrained}"
        if custom:
            return False, f"the CLIP model config {model} has no pretrained weights '{pretrained}'"
        return False, f"open_clip has no pretrained weights '{pretrained}' for model '{model}'"
    cached = C.cached_pretrained_file(arch, pretrained)
    if cached:
        return True, f"{label} are cached at {cached}"
    off = C.offline_mode()
    if off:
        return False, f"{label} are not cached and downloads are disabled ({off}=1)"

    result: list[tuple[bool, str]] = []

    def run() -> None:
        try:
            result.append(_probe(cfg, deadline))
        except Exception as e:  # noqa: BLE001
            result.append((False, f"the hub probe failed ({one_line(e, 100)})"))

    worker = threading.Thread(target=run, name="streamvid-clip-probe", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not result:
        return False, f"{label} are not cached and the hub is unreachable (no answer within {timeout:g} s)"
    ok, why = result[0]
    if ok:
        return True, f"{label} are not cached but {why}"
    return False, f"{label} are not cached and {why}"


def _classic() -> Encoder:
    from streamvid.models.classic import ClassicEncoder

    return ClassicEncoder()


def create_encoder(
    name: str = "auto",
    *,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    weights: str | None = None,
    device: str | None = None,
    timeout: float = 3.0,
) -> tuple[Encoder, str | None]:
    """The encoder, and for ``auto`` a one-line note when it fell back to classic (else ``None``)."""
    name = (name or "auto").strip().lower()
    if name not in ENCODER_NAMES:
        raise EncoderError(f"unknown encoder '{name}' (choose one of: {', '.join(ENCODER_NAMES)})")
    if name == "classic":
        return _classic(), None

    def clip_encoder() -> Encoder:
        from .clip import ClipEncoder

        return ClipEncoder(model=model, pretrained=pretrained, weights=weights, device=device)

    if name == "clip" or weights:
        return clip_encoder(), None

    from . import clip as C

    ok, why = clip_weights_status(model, pretrained, timeout)
    if ok:
        log.info("encoder auto: %s", why)
        try:
            return clip_encoder(), None
        except EncoderError as e:
            note = f"CLIP could not be loaded ({one_line(e, 160)}); using the classic encoder."
    else:
        try:
            known = bool(C.pretrained_cfg(C.resolve_model_name(model)[0], pretrained))
        except EncoderError:
            known = False
        hint = C.download_hint(model, pretrained) if known else "pass --weights PATH"
        note = f"{why}; using the classic encoder. To use CLIP, {hint}"
    log.info("encoder auto: %s", note)
    try:
        return _classic(), note
    except ImportError as e:
        raise EncoderError(
            f"{note.split(';')[0]}, and the classic encoder is unavailable: {one_line(e, 160)}"
        ) from e


def encoder_from_config(cfg: dict, *, weights: str | None = None, device: str | None = None) -> Encoder:
    """Re-create the encoder a memory was made with, from its ``config()`` (as saved in a snapshot).

    ``weights`` overrides the checkpoint path recorded in ``cfg`` (e.g. the file moved).
    """
    name = cfg.get("name")
    if name == "classic":
        enc = _classic()
        if enc.config().get("version") != cfg.get("version", enc.config().get("version")):
            raise EncoderError(f"this memory was made with classic encoder version {cfg.get('version')}, "
                               f"this streamvid has version {enc.config().get('version')}")
        return enc
    if name == "clip":
        from .clip import ClipEncoder

        return ClipEncoder(model=cfg.get("model", DEFAULT_MODEL), pretrained=cfg.get("pretrained"),
                           weights=weights or cfg.get("weights"), device=device)
    raise EncoderError(f"unknown encoder in the memory file: {name!r}")
