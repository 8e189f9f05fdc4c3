"""Answers from the compressed memory alone: nothing is decoded again.

``answer_text(mem, question, embed_text)`` and ``answer_image(mem, query_vec)`` → :class:`Answer`.

Intents, tried in this order:

- ``entered`` / ``left`` — "who entered?", "who came in?", "who left?", "who went out?" … from the
  pinned events (and the counts folded into the timeline when the event store was full);
- ``concept`` — person, face, motion, scene change, dark/bright: from the detector's per-segment
  signals in the timeline (these work with every encoder);
- ``retrieval`` — anything the encoder can embed (CLIP: any text; classic: colour names): the
  query attends over slots, timeline segments and events (:meth:`DeltaMem.read`);
- ``unsupported`` / ``empty`` — an honest answer saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streamvid.memory import DeltaMem
from streamvid.memory.deltamem import PinnedEvent
from streamvid.models.classic import COLOUR_WORDS
from streamvid.timefmt import fmt_time
from streamvid.types import Answer, Moment

ENTER_RE = re.compile(
    r"\b(enter(?:ed|s|ing)?|came in|comes? in|coming in|arriv\w*|walk(?:ed|s|ing)? in(?:to)?|"
    r"show(?:ed|s)? up|step(?:ped|s)? in|got in|gets? in)\b")
LEAVE_RE = re.compile(
    r"\b(left|leav\w*|exit\w*|(?:went|go|goes|going|walk(?:ed|s|ing)?|stepp?(?:ed)?|got|gets?) "
    r"(?:out|away|off)|depart\w*)\b")
CONCEPTS: dict[str, re.Pattern] = {
    "scene_change": re.compile(r"\b(scene change\w*|scene cut\w*|(?:camera |shot )?cuts?|shot change\w*|"
                               r"new scene|change of scene|scene changed)\b"),
    "face": re.compile(r"\bfaces?\b"),
    "person": re.compile(r"\b(persons?|people|someone|somebody|anyone|anybody|humans?|man|woman|men|"
                         r"women|pedestrians?|visitors?)\b"),
    "motion": re.compile(r"\b(motion|moving|movement|moves?|moved|activity|active)\b"),
    "dark": re.compile(r"\b(dark\w*|dim\w*|night|lights? (?:off|out))\b"),
    "bright": re.compile(r"\b(bright\w*|lights? on|daylight|sunny)\b"),
}
_CONCEPT_TEXT = {  # concept → (lead when found, answer when not)
    "scene_change": ("Scene changes at", "No scene change was seen"),
    "face": ("A face at", "No face was seen"),
    "person": ("A person at", "No person was seen"),
    "motion": ("Motion at", "No motion was seen"),
    "dark": ("Dark at", "It was never dark"),
    "bright": ("Bright at", "It was never bright"),
}
_CONCEPT_WORDS = "entries/exits, person, face, motion, scene changes, dark/bright"

EmbedText = Callable[[str], "torch.Tensor | None"]


@dataclass
class _Visit:
    entered: PinnedEvent | None
    left: PinnedEvent | None


def answer_text(mem: DeltaMem, question: str, embed_text: EmbedText | None, *, encoder_name: str,
                top_k: int = 5) -> Answer:
    """Answer a text question. ``embed_text`` maps text to ``[D]`` or None (see the encoders)."""
    q = " ".join(question.split())
    if not q:
        return Answer(question, "text", "The question is empty: ask e.g. \"who entered?\".", intent="empty")
    low = q.lower()
    if ENTER_RE.search(low) and not LEAVE_RE.search(low):
        return _events_answer(mem, q, "entered")
    if LEAVE_RE.search(low):
        return _events_answer(mem, q, "left")
    colours = [w for w in re.findall(r"[a-z]+", low) if w in COLOUR_WORDS]
    for concept, pattern in CONCEPTS.items():
        if colours and concept == "person":
            continue  # "a person in red": the colour is the question
        if pattern.search(low):
            return _concept_answer(mem, q, concept, top_k)
    vec = embed_text(q) if embed_text is not None else None
    if vec is None:
        return Answer(q, "text",
                      f"The {encoder_name} encoder cannot understand this question: it knows "
                      f"{_CONCEPT_WORDS} and colour names. Use the clip encoder (--encoder clip) "
                      "for open questions.", intent="unsupported")
    moments = retrieve(mem, vec, top_k=top_k, words=colours)
    return Answer(q, "text", _retrieval_text(moments, "Best matches"), moments, intent="retrieval")


def answer_image(mem: DeltaMem, label: str, vec: torch.Tensor, *, top_k: int = 5,
                 min_score: float = 0.5) -> Answer:
    """When does the scene in an image appear? ``vec`` is the image's ``[D]`` embedding."""
    moments = retrieve(mem, vec, top_k=top_k)
    for m in moments:
        m.event = "match"
    if moments and moments[0].score >= min_score:
        text = _retrieval_text(moments, "This scene appears at")
    else:
        text = _retrieval_text(moments, "No close match; the most similar moments are")
    return Answer(label, "image", text, moments, intent="image")


# ------------------------------------------------------------------ events
def _visits(mem: DeltaMem) -> list[_Visit]:
    """Pair each entry with the exit of the same track, in time order."""
    visits: list[_Visit] = []
    open_: dict[int, _Visit] = {}
    for ev in sorted(mem.events(), key=lambda e: e.t):
        if ev.kind == "entered":
            visits.append(_Visit(ev, None))
            if ev.track_id >= 0:
                open_[ev.track_id] = visits[-1]
        elif ev.kind == "left":
            v = open_.pop(ev.track_id, None) if ev.track_id >= 0 else None
            if v is None:
                visits.append(_Visit(None, ev))
            else:
                v.left = ev
    return visits


def _visit_spans(mem: DeltaMem) -> dict[int, tuple[float, float]]:
    """Event row → (start, end) of the visit it belongs to: from the entry (or the first known
    time) to the exit (or the end of what was watched, for someone still there)."""
    last = mem.stats()["last_t"]
    spans = {}
    for v in _visits(mem):
        start = v.entered.t if v.entered is not None else v.left.t
        end = v.left.t if v.left is not None else last
        for ev in (v.entered, v.left):
            if ev is not None:
                spans[ev.index] = (start, max(start, end))
    return spans


def _events_answer(mem: DeltaMem, question: str, kind: str) -> Answer:
    moments = []
    spans = _visit_spans(mem)
    for ev in mem.events(kind):
        start, end = spans[ev.index]
        moments.append(Moment(t=ev.t, start=start, end=end, score=ev.score, event=kind,
                              description=ev.description or "person", thumb_id=ev.thumb))
    folded = int(mem.folded_counts().get(kind, 0))
    verb = "entered" if kind == "entered" else "left"
    n = len(moments) + folded
    if n == 0:
        span = _span_text(mem)
        return Answer(question, "text", f"Nobody {verb} the view{span}.", [], intent=kind)
    parts = [f"{m.description} at {fmt_time(m.t)}" for m in moments]
    text = f"{n} {'person' if n == 1 else 'people'} {verb}: " + "; ".join(parts)
    if folded:
        text += (f"; and {folded} more whose details were folded into the timeline to keep the "
                 "memory's size fixed")
    return Answer(question, "text", text + ".", moments, intent=kind)


def _span_text(mem: DeltaMem) -> str:
    st = mem.stats()
    if st["frames_seen"] == 0:
        return ""
    return f" (watched {fmt_time(st['first_t'])}–{fmt_time(st['last_t'])})"


# ------------------------------------------------------------------ concepts
def _concept_answer(mem: DeltaMem, question: str, concept: str, top_k: int) -> Answer:
    segs = mem.segments()
    if not segs:
        return Answer(question, "text", "The memory is empty: nothing was watched.", [], intent="concept")
    bright = sorted(s.channels["brightness"] for s in segs)
    median = bright[len(bright) // 2]
    dark_below = min(0.35, 0.8 * median)  # dark: dim in absolute terms and for this video
    bright_above = max(0.6, 1.2 * median)

    def value(s) -> float:
        c = s.channels
        if concept == "dark":
            return 1.0 - c["brightness"] if c["brightness"] < dark_below else 0.0
        if concept == "bright":
            return c["brightness"] if c["brightness"] > bright_above else 0.0
        if concept == "motion":
            return c["motion"] if c["motion"] >= 0.005 else 0.0
        return c[concept] if c[concept] >= 1.0 else 0.0

    spans: list[list] = []  # [start, end, best value, thumb]
    for s in segs:
        v = value(s)
        if v <= 0:
            continue
        if spans and s.start - spans[-1][1] < 1.0:
            spans[-1][1] = max(spans[-1][1], s.end)
            if v > spans[-1][2]:
                spans[-1][2], spans[-1][3] = v, s.thumb
        else:
            spans.append([s.start, s.end, v, s.thumb])
    found, none = _CONCEPT_TEXT[concept]
    if not spans:
        return Answer(question, "text", f"{none}{_span_text(mem)}.", [], intent="concept")
    moments = [Moment(t=a, start=a, end=b, score=min(1.0, float(v)), event=concept, thumb_id=th)
               for a, b, v, th in spans]
    times = ", ".join(_span(m) for m in moments[:top_k])
    more = f" and {len(moments) - top_k} more" if len(moments) > top_k else ""
    return Answer(question, "text", f"{found} {times}{more}.", moments, intent="concept")


# ------------------------------------------------------------------ retrieval
def retrieve(mem: DeltaMem, vec: torch.Tensor, *, top_k: int = 5, words: list[str] | None = None) -> list[Moment]:
    """Top moments for a ``[D]`` query over events, timeline segments and slots, with NMS in time.

    ``words`` (e.g. colour names from the question) found in a pinned event's description raise
    that event's score: the description was read off the subject at full resolution.
    """
    r = mem.read(vec, top_k=max(top_k * 3, 8))
    cands: list[Moment] = []
    events = {e.index: e for e in mem.events()}
    scores = dict(zip(r.events.index.tolist(), r.events.cos.tolist()))
    if words:
        for ev in events.values():
            said = set(re.findall(r"[a-z]+", ev.description.lower()))
            hit = sum(w in said for w in words) / len(words)
            if hit:
                scores[ev.index] = max(scores.get(ev.index, 0.0), 0.5 + 0.5 * hit)
    spans = _visit_spans(mem)
    for i, c in scores.items():
        ev = events[i]
        start, end = spans.get(i, (ev.t, max(ev.t, ev.t_end)))
        cands.append(Moment(t=ev.t, start=start, end=end, score=c, event=ev.kind,
                            description=ev.description, thumb_id=ev.thumb))
    segs = {s.index: s for s in mem.segments()}
    for i, c in zip(r.segments.index.tolist(), r.segments.cos.tolist()):
        seg = segs[i]
        cands.append(Moment(t=seg.start, start=seg.start, end=seg.end, score=c, event="match",
                            thumb_id=seg.thumb))
    slots = {s.index: s for s in mem.slots()}
    slot_rows = r.slots.index.tolist()
    for i, c in zip(slot_rows, r.slots.cos.tolist()):
        slot = slots[i]
        cands.append(Moment(t=slot.t_first, start=slot.t_first, end=slot.t_last, score=c,
                            event="match", thumb_id=slot.thumb))
    if slot_rows:
        mem.mark_retrieved(slot_rows)
    cands.sort(key=lambda m: -m.score)
    kept: list[Moment] = []
    for m in cands:
        if all(_overlap(m, k) < 0.5 for k in kept):
            kept.append(m)
        if len(kept) == top_k:
            break
    return kept


def _overlap(a: Moment, b: Moment) -> float:
    inter = min(a.end, b.end) - max(a.start, b.start)
    if inter < 0:
        return 0.0
    union = max(a.end, b.end) - min(a.start, b.start)
    return 1.0 if union <= 0 else inter / union


def _span(m: Moment) -> str:
    if m.end - m.start < 0.05:
        return fmt_time(m.t)
    return f"{fmt_time(m.start)}–{fmt_time(m.end)}"


def _retrieval_text(moments: list[Moment], lead: str) -> str:
    if not moments:
        return "Nothing in the memory matches."
    return f"{lead}: " + ", ".join(f"{_span(m)} (score {m.score:.2f})" for m in moments) + "."
