"""Answers from the compressed memory alone: nothing is decoded again.

``answer_text(mem, question, embed_text)`` and ``answer_image(mem, query_vec)`` → :class:`Answer`.

Intents, tried in this order (``Answer.intent`` says which one answered):

- ``empty`` / ``invalid`` — nothing to ask, or no letters / over :data:`MAX_QUESTION` characters;
- ``at`` — "what is happening at 00:01:05?" (and ``answer_at`` for ``--at``): the segment holding
  the time, its signals, the events within ±:data:`AT_WINDOW` s and its thumbnail;
- ``summary`` — "summarise", "what happened?": the distinct scenes as a timeline (consecutive
  segments grouped; a new scene at a cut or when the look changes), with the events of each;
- ``count`` — "how many people entered / left / came in?": pinned events + folded counts;
- ``appeared`` — "when did the person in red appear?": pinned events whose description holds the
  question's colour words, then retrieval, first appearance first;
- ``presence`` — "is/was there a person / someone in red / a face / motion?": yes/no with a
  confidence (see :func:`presence_confidence` and :func:`clip_margin_confidence`);
- ``entered`` / ``left`` — "who entered?", "who came in?", "who left?", "who went out?" … from the
  pinned events (and the counts folded into the timeline when the event store was full);
- ``concept`` — person, face, motion, scene change, dark/bright: from the detector's per-segment
  signals in the timeline (these work with every encoder);
- ``retrieval`` — anything else the encoder can embed (CLIP: any text; classic: colour names), as
  a best-effort answer: :func:`attend` over slots, timeline segments and events;
- ``unsupported`` / ``empty`` — an honest answer saying so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streamvid.errors import InputError
from streamvid.memory import DeltaMem
from streamvid.memory.deltamem import PinnedEvent
from streamvid.models.classic import COLOUR_WORDS
from streamvid.timefmt import fmt_time, parse_time
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
_CONCEPT_WORDS = ("entries/exits, counts, person, face, motion, scene changes, dark/bright, \"what happened\", "
                  "\"what is happening at HH:MM:SS\"")

EmbedText = Callable[[str], "torch.Tensor | None"]


@dataclass
class _Visit:
    entered: PinnedEvent | None
    left: PinnedEvent | None


MAX_QUESTION = 1000  # characters; longer questions are refused (intent "invalid")
AT_WINDOW = 5.0  # seconds either side of an ``at`` time whose events are listed
DEFAULT_MIN_GAP = 1.0  # seconds: NMS in time between retrieved moments

COUNT_RE = re.compile(r"\b(how many|how much|number of|count)\b")
APPEAR_RE = re.compile(r"\b(appear\w*|first (?:seen|see|spotted|visible)|seen first|become visible|"
                       r"became visible)\b")
PRESENCE_RE = re.compile(r"^(?:is|was|are|were|did|does|do|has|have|had|can|could)\b.*"
                         r"\b(there|any\w*|some\w*|see|seen|visible|detect\w*|present|a|an)\b")
SUMMARY_RE = re.compile(r"\b(summar\w*|recap\w*|overview|outline|timeline|what (?:has |had )?happened|"
                        r"what went on|what was going on|what did (?:i|we) miss|describe the video|"
                        r"tell me about the video)\b")
AT_RE = re.compile(r"\b(?:at|around|@)\s*(\d+(?::\d{1,2}){0,2}(?:\.\d+)?)\s*(?:s|sec\w*)?\b")
# CLIP prompts of "nothing in particular": a presence question's margin is taken against these.
BACKGROUND_PROMPTS = ("a photo of an empty room", "an empty scene with nobody in it", "a photo of a wall",
                      "a blurry photo", "a photo")
MARGIN_CENTRE, MARGIN_SCALE = 0.01, 0.015  # calibration of the CLIP margin, see clip_margin_confidence


def answer_text(mem: DeltaMem, question: str, embed_text: EmbedText | None, *, encoder_name: str,
                top_k: int = 5, min_gap: float = DEFAULT_MIN_GAP) -> Answer:
    """Answer a text question. ``embed_text`` maps text to ``[D]`` or None (see the encoders)."""
    q = " ".join(str(question).split())
    if not q:
        return Answer(q, "text", "The question is empty: ask e.g. \"who entered?\".", intent="empty")
    if len(q) > MAX_QUESTION:
        return Answer(q[:80] + "…", "text", f"The question is too long ({len(q)} characters; at most "
                      f"{MAX_QUESTION}): ask something short, e.g. \"who entered?\".", intent="invalid")
    if not re.search(r"[^\W\d_]", q):
        return Answer(q, "text", "The question has no words: ask e.g. \"who entered?\" or "
                      "\"what happened?\".", intent="invalid")
    low = q.lower().replace("’", "'")
    colours = [w for w in re.findall(r"[a-z]+", low) if w in COLOUR_WORDS]
    m = AT_RE.search(low)
    if m and re.search(r"\b(what|happen\w*|going on|see|seen|show\w*|there)\b", low):
        try:
            return answer_at(mem, parse_time(m.group(1)), question=q)
        except InputError:
            pass
    if SUMMARY_RE.search(low):
        return answer_summary(mem, q)
    if COUNT_RE.search(low):
        return _count_answer(mem, q, low)
    if APPEAR_RE.search(low) and not PRESENCE_RE.search(low):
        return _appeared_answer(mem, q, low, colours, embed_text, encoder_name, top_k, min_gap)
    if PRESENCE_RE.search(low):
        ans = _presence_answer(mem, q, low, colours, embed_text)
        if ans is not None:
            return ans
    if ENTER_RE.search(low) and not LEAVE_RE.search(low):
        return _events_answer(mem, q, "entered")
    if LEAVE_RE.search(low):
        return _events_answer(mem, q, "left")
    concept = _concept_of(low, colours)
    if concept is not None:
        return _concept_answer(mem, q, concept, top_k)
    vec = embed_text(q) if embed_text is not None else None
    if vec is None:
        return _unsupported(q, encoder_name)
    moments = retrieve(mem, vec, top_k=top_k, words=colours, min_gap=min_gap)
    return Answer(q, "text", _retrieval_text(moments, "Best-effort matches by similarity (no specific "
                                             "question type recognised)"), moments, intent="retrieval")


def _unsupported(q: str, encoder_name: str) -> Answer:
    return Answer(q, "text",
                  f"The {encoder_name} encoder cannot understand this question: it knows "
                  f"{_CONCEPT_WORDS} and colour names. Use the clip encoder (--encoder clip) "
                  "for open questions.", intent="unsupported")


def _concept_of(low: str, colours: list[str]) -> str | None:
    for concept, pattern in CONCEPTS.items():
        if colours and concept == "person":
            continue  # "a person in red": the colour is the question
        if pattern.search(low):
            return concept
    return None


def answer_image(mem: DeltaMem, label: str, vec: torch.Tensor, *, top_k: int = 5,
                 min_score: float = 0.5, min_gap: float = DEFAULT_MIN_GAP) -> Answer:
    """When does the scene in an image appear? ``vec`` is the image's ``[D]`` embedding."""
    moments = retrieve(mem, vec, top_k=top_k, min_gap=min_gap)
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


FOLDED_SHOWN = 8  # folded events' times listed in an answer


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
        known = [t for t, _ in mem.folded_events(kind)]
        if known:
            shown = ", ".join(fmt_time(t) for t in known[:FOLDED_SHOWN]) + (", …" if len(known) > FOLDED_SHOWN else "")
            text += f" ({len(known)} of them at known times: {shown})"
    return Answer(question, "text", text + ".", moments, intent=kind)


def _span_text(mem: DeltaMem) -> str:
    st = mem.stats()
    if st["frames_seen"] == 0:
        return ""
    return f" (watched {fmt_time(st['first_t'])}–{fmt_time(st['last_t'])})"


# ------------------------------------------------------------------ concepts
def _concept_spans(mem: DeltaMem, concept: str, segs=None) -> tuple[list[list], int]:
    """Spans ``[start, end, best value, thumb]`` where the detector saw ``concept``, and how many
    segments showed it."""
    segs = mem.segments() if segs is None else segs
    if not segs:
        return [], 0
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

    spans: list[list] = []
    hits = 0
    for s in segs:
        v = value(s)
        if v <= 0:
            continue
        hits += 1
        if spans and s.start - spans[-1][1] < 1.0:
            spans[-1][1] = max(spans[-1][1], s.end)
            if v > spans[-1][2]:
                spans[-1][2], spans[-1][3] = v, s.thumb
        else:
            spans.append([s.start, s.end, v, s.thumb])
    return spans, hits


def _concept_answer(mem: DeltaMem, question: str, concept: str, top_k: int) -> Answer:
    if not mem.segments():
        return Answer(question, "text", "The memory is empty: nothing was watched.", [], intent="concept")
    spans, _ = _concept_spans(mem, concept)
    found, none = _CONCEPT_TEXT[concept]
    if not spans:
        return Answer(question, "text", f"{none}{_span_text(mem)}.", [], intent="concept")
    moments = [Moment(t=a, start=a, end=b, score=min(1.0, float(v)), event=concept, thumb_id=th)
               for a, b, v, th in spans]
    times = ", ".join(_span(m) for m in moments[:top_k])
    more = f" and {len(moments) - top_k} more" if len(moments) > top_k else ""
    return Answer(question, "text", f"{found} {times}{more}.", moments, intent="concept")


# ------------------------------------------------------------------ count
def _count_answer(mem: DeltaMem, q: str, low: str) -> Answer:
    """How many entered / left. Neither or both named: entries (people who came), exits noted."""
    kind = "left" if LEAVE_RE.search(low) and not ENTER_RE.search(low) else "entered"
    base = _events_answer(mem, q, kind)
    n = len(base.moments) + int(mem.folded_counts().get(kind, 0))
    verb = "entered" if kind == "entered" else "left"
    text = base.answer
    if not (ENTER_RE.search(low) or LEAVE_RE.search(low)):
        other = len(mem.events("left")) + int(mem.folded_counts().get("left", 0))
        text = (f"{n} {'person' if n == 1 else 'people'} {verb} the view ({other} left). "
                + (base.answer if n else ""))
    return Answer(q, "text", text.strip(), base.moments, intent="count")


# ------------------------------------------------------------------ appeared
def _matching_events(mem: DeltaMem, words: list[str]) -> list[tuple[PinnedEvent, float]]:
    """Pinned events whose description holds the ``words``, with the fraction held (> 0)."""
    out = []
    for ev in mem.events():
        said = set(re.findall(r"[a-z]+", ev.description.lower()))
        hit = sum(w in said for w in words) / len(words) if words else 0.0
        if hit:
            out.append((ev, hit))
    return out


def _appeared_answer(mem: DeltaMem, q: str, low: str, colours: list[str], embed_text: EmbedText | None,
                     encoder_name: str, top_k: int, min_gap: float) -> Answer:
    """First appearance: described events first (by time), then retrieval hits; earliest first."""
    moments: list[Moment] = []
    spans = _visit_spans(mem)
    best_hit = max((h for _, h in _matching_events(mem, colours)), default=0.0)
    for ev, hit in _matching_events(mem, colours):
        if hit < best_hit or ev.kind != "entered" and any(
                m.description == ev.description for m in moments):
            continue
        start, end = spans.get(ev.index, (ev.t, max(ev.t, ev.t_end)))
        moments.append(Moment(t=ev.t, start=start, end=end, score=0.5 + 0.5 * hit, event="appeared",
                              description=ev.description, thumb_id=ev.thumb))
    if not moments:
        vec = embed_text(q) if embed_text is not None else None
        if vec is not None:
            moments = [m for m in retrieve(mem, vec, top_k=top_k, words=colours, min_gap=min_gap)]
        elif _concept_of(low, colours) is not None:
            spans_c, _ = _concept_spans(mem, _concept_of(low, colours))
            moments = [Moment(t=a, start=a, end=b, score=min(1.0, float(v)), event="appeared", thumb_id=th)
                       for a, b, v, th in spans_c]
        elif not colours:
            ans = _unsupported(q, encoder_name)
            ans.intent = "appeared"
            return ans
    moments.sort(key=lambda m: (m.t, -m.score))
    moments = moments[:top_k]
    if not moments:
        return Answer(q, "text", f"Not seen{_span_text(mem)}.", [], intent="appeared")
    first = moments[0]
    what = f" ({first.description})" if first.description else ""
    rest = ", ".join(_span(m) for m in moments[1:])
    text = f"First appeared at {fmt_time(first.t)}{what}" + (f"; also at {rest}" if rest else "") + "."
    return Answer(q, "text", text, moments, intent="appeared")


# ------------------------------------------------------------------ presence
def presence_confidence(evidence: int, watched_segments: int) -> tuple[bool, float]:
    """Detector / description evidence → (present?, confidence in that answer).

    ``evidence`` counts independent sightings (timeline segments whose detector signal crossed its
    threshold, pinned events whose description matches). Each sighting is taken as a detection
    right with probability 1/2 independently, so ``P(yes) = 1 - 0.5**evidence`` mapped into
    [0.5, 1]: 1 sighting → 0.75, 2 → 0.875, 4 → 0.97. With no sighting the answer is "no", and its
    confidence grows with how much was watched the same way (capped at 0.95: a detector can miss).
    """
    if evidence > 0:
        return True, 0.5 + 0.5 * (1.0 - 0.5 ** evidence)
    return False, min(0.95, 0.5 + 0.5 * (1.0 - 0.5 ** max(0, watched_segments)))


def clip_margin_confidence(margin: float) -> float:
    """P(present) from the CLIP margin ``cos(q, best) - max_j cos(bg_j, best)``.

    ``best`` is the stored embedding (event, segment or slot) the query matches best, ``bg_j`` the
    :data:`BACKGROUND_PROMPTS`. CLIP text–image cosines sit in a narrow band (≈0.15–0.35), so the
    margins that matter are a few hundredths: a logistic centred at :data:`MARGIN_CENTRE` (0.01,
    a small positive margin is still ambiguous) with scale :data:`MARGIN_SCALE` (0.015) gives
    0.5 at 0.01, ≈0.88 at +0.04 and ≈0.12 at −0.02. A heuristic, not fitted on labelled data.
    """
    return 1.0 / (1.0 + math.exp(-(margin - MARGIN_CENTRE) / MARGIN_SCALE))


def _best_embedding(mem: DeltaMem, vec: torch.Tensor) -> torch.Tensor | None:
    r = mem.read(vec, top_k=1)
    best, emb = -2.0, None
    for hits, table in ((r.slots, lambda i: mem.slot_k[i]), (r.segments, mem.seg_vectors), (r.events, mem.ev_vectors)):
        if len(hits.index) and float(hits.cos[0]) > best:
            best, emb = float(hits.cos[0]), table(int(hits.index[0]))
    return emb


def _presence_answer(mem: DeltaMem, q: str, low: str, colours: list[str],
                     embed_text: EmbedText | None) -> Answer | None:
    """Yes/no with a confidence; None when this is no presence question after all."""
    segs = mem.segments()
    if not segs:
        return Answer(q, "text", "No: the memory is empty, nothing was watched.", [], intent="presence",
                      confidence=1.0)
    what, moments, evidence = None, [], 0
    kind = "entered" if ENTER_RE.search(low) and not LEAVE_RE.search(low) else \
        "left" if LEAVE_RE.search(low) else None
    concept = _concept_of(low, colours)
    if kind is not None:
        what = "someone " + ("entered" if kind == "entered" else "left")
        evs = mem.events(kind)
        evidence = len(evs) + int(mem.folded_counts().get(kind, 0))
        moments = [Moment(t=e.t, start=e.t, end=max(e.t, e.t_end), score=e.score, event=kind,
                          description=e.description, thumb_id=e.thumb) for e in evs]
    elif colours:
        what = "someone in " + " and ".join(colours)
        for ev, hit in _matching_events(mem, colours):
            if hit == 1.0:
                evidence += 1
                moments.append(Moment(t=ev.t, start=ev.t, end=max(ev.t, ev.t_end), score=ev.score,
                                      event=ev.kind, description=ev.description, thumb_id=ev.thumb))
    elif concept is not None:
        what = {"scene_change": "a scene change", "face": "a face", "person": "a person", "motion": "motion",
                "dark": "darkness", "bright": "bright light"}[concept]
        spans, evidence = _concept_spans(mem, concept, segs)
        if concept == "person":
            evidence += len(mem.events("entered"))
        moments = [Moment(t=a, start=a, end=b, score=min(1.0, float(v)), event=concept, thumb_id=th)
                   for a, b, v, th in spans]
    present, conf = presence_confidence(evidence, len(segs))
    source = "the detectors' signals and event descriptions"
    # CLIP: a margin against background prompts, when the encoder embeds text
    if embed_text is not None and kind is None:
        vec = embed_text(q)
        bg = [embed_text(p) for p in BACKGROUND_PROMPTS] if vec is not None else []
        if vec is not None and all(b is not None for b in bg) and (concept is None or concept == "person"):
            best = _best_embedding(mem, vec)
            if best is not None:
                v = vec.to(best) / vec.norm().clamp_min(1e-12)
                margin = float(v @ best) - max(float(b.to(best) / b.norm().clamp_min(1e-12) @ best) for b in bg)
                p = clip_margin_confidence(margin)
                if what is None or not present:  # detectors say nothing (or no): CLIP decides
                    present, conf = p >= 0.5, max(p, 1.0 - p)
                    source = f"the CLIP margin {margin:+.3f} against background prompts"
                    if present and not moments:
                        moments = retrieve(mem, vec, top_k=3)
                what = what or "that"
    if what is None:
        return None
    conf = round(conf, 3)
    if present:
        when = ", ".join(_span(m) for m in moments[:5])
        text = f"Yes: {what}" + (f" at {when}" if when else "") + f" (confidence {conf:.2f}, from {source})."
    else:
        if kind is not None:
            none = f"No: nobody {kind}"
        elif colours:
            none = f"No: nobody in {' and '.join(colours)} was seen"
        elif concept is not None:
            none = _CONCEPT_TEXT[concept][1]
        else:
            none = "No: nothing like that was seen"
        text = f"{none}{_span_text(mem)} (confidence {conf:.2f} that there was none, from {source})."
        moments = []
    return Answer(q, "text", text, moments, intent="presence", confidence=conf)


# ------------------------------------------------------------------ at
def _signals_text(c: dict) -> str:
    people = int(round(c["person"]))
    parts = [f"{people} {'person' if people == 1 else 'people'} present" if people else "nobody detected",
             "motion" if c["motion"] >= 0.005 else "no motion",
             f"brightness {c['brightness']:.2f}"]
    if c["face"] >= 1.0:
        parts.append("a face")
    return ", ".join(parts)


def answer_at(mem: DeltaMem, t: float, *, question: str | None = None, window: float = AT_WINDOW) -> Answer:
    """What was happening at ``t``: the segment holding it, its signals, events within ±``window``."""
    q = question or f"what is happening at {fmt_time(t)}?"
    segs = mem.segments()
    if not segs:
        return Answer(q, "text", "The memory is empty: nothing was watched.", [], intent="at")
    st = mem.stats()
    if t < st["first_t"] - 1.0 or t > st["last_t"] + 1.0:
        return Answer(q, "text", f"{fmt_time(t)} is outside what was watched{_span_text(mem)}.", [],
                      intent="at")
    seg = min(segs, key=lambda s: 0.0 if s.start <= t <= s.end else min(abs(s.start - t), abs(s.end - t)))
    if seg.end < t:  # between two segments: the one that had started
        before = [s for s in segs if s.start <= t]
        seg = before[-1] if before else seg
    sig = _signals_text(seg.channels)
    start, end = _period(mem, segs, seg.index, sig)
    moments = [Moment(t=t, start=start, end=end, score=1.0, event="segment", description=sig,
                      thumb_id=seg.thumb)]
    spans = _visit_spans(mem)
    near = [e for e in mem.events() if abs(e.t - t) <= window]
    for ev in near:
        start, end = spans.get(ev.index, (ev.t, max(ev.t, ev.t_end)))
        moments.append(Moment(t=ev.t, start=start, end=end, score=ev.score, event=ev.kind,
                              description=ev.description, thumb_id=ev.thumb))
    text = f"At {fmt_time(t)} (segment {_span(moments[0])}): {sig}."
    if near:
        text += " Nearby: " + "; ".join(f"{e.kind} {e.description or 'person'} at {fmt_time(e.t)}"
                                        for e in near) + "."
    else:
        text += f" No entries or exits within ±{window:g} s."
    known = [(ft, k) for ft, k in mem.folded_events() if abs(ft - t) <= window and k in ("entered", "left")]
    if known:
        text += " Folded (details not kept): " + "; ".join(f"{k} at {fmt_time(ft)}" for ft, k in known) + "."
    folded = {k: v for k, v in seg.folded.items() if v}
    if folded:
        text += " Folded into this segment: " + ", ".join(f"{v} {k}" for k, v in folded.items()) + "."
    return Answer(q, "text", text, moments, intent="at")


def _period(mem: DeltaMem, segs, i: int, sig: str) -> tuple[float, float]:
    """The span of segment ``i`` widened to its neighbours that show the same view (cosine ≥ the
    memory's ``scene_threshold``) with the same activity (``_signals_text``): the timeline keeps a
    segment per changing frame, and "what is happening at t" is about the period, not the frame."""
    emb = mem.seg_vectors()
    thr = getattr(mem, "scene_threshold", 0.9)
    lo = hi = i
    while lo > 0 and float(emb[lo - 1] @ emb[lo]) >= thr and _signals_text(segs[lo - 1].channels) == sig:
        lo -= 1
    while hi + 1 < len(segs) and float(emb[hi + 1] @ emb[hi]) >= thr and _signals_text(segs[hi + 1].channels) == sig:
        hi += 1
    return segs[lo].start, segs[hi].end


# ------------------------------------------------------------------ summary
SCENE_COS = 0.8  # adjacent segments less similar than this start a new scene


def answer_summary(mem: DeltaMem, question: str = "what happened?", *, max_lines: int = 12) -> Answer:
    """The distinct scenes as a timeline: consecutive segments are grouped until a scene cut (the
    detector's ``scene_change``) or a change of look (cosine of segment vectors < :data:`SCENE_COS`);
    each span lists its signals and the events inside it."""
    segs = mem.segments()
    if not segs:
        return Answer(question, "text", "The memory is empty: nothing was watched.", [], intent="summary")
    n = len(segs)
    emb = mem.seg_vectors(slice(0, n))
    sim = (emb[:-1] * emb[1:]).sum(-1).tolist() if n > 1 else []
    groups: list[list] = [[segs[0]]]
    for i in range(1, n):
        if segs[i].channels["scene_change"] >= 0.5 or sim[i - 1] < SCENE_COS:
            groups.append([])
        groups[-1].append(segs[i])
    events = mem.events()
    moments, lines = [], []
    for k, g in enumerate(groups):
        start, end = g[0].start, g[-1].end
        end_ = groups[k + 1][0].start if k + 1 < len(groups) else end
        people = max(s.channels["person"] for s in g)
        motion = max(s.channels["motion"] for s in g)
        bright = sum(s.channels["brightness"] * s.count for s in g) / max(1, sum(s.count for s in g))
        look = [f"{int(round(people))} {'person' if round(people) == 1 else 'people'} at most" if people >= 1
                else "nobody detected", "motion" if motion >= 0.005 else "still",
                "dark" if bright < 0.35 else "bright" if bright > 0.6 else "normal light"]
        inside = [e for e in events if start <= e.t < end_ or (k + 1 == len(groups) and e.t >= start)]
        folded = sum(sum(s.folded.values()) for s in g)
        desc = ", ".join(look)
        if inside:
            desc += "; " + "; ".join(f"{e.kind} {e.description or 'person'} at {fmt_time(e.t)}" for e in inside)
        if folded:
            desc += f"; {folded} more entries/exits folded into the timeline"
        thumb = max(g, key=lambda s: s.count).thumb
        moments.append(Moment(t=start, start=start, end=end, score=1.0, event="scene", description=desc,
                              thumb_id=thumb))
        lines.append(f"{k + 1}. {_span(moments[-1])}: {desc}")
    text = f"{len(groups)} {'scene' if len(groups) == 1 else 'scenes'}{_span_text(mem)}: " + " · ".join(
        lines[:max_lines])
    if len(lines) > max_lines:
        text += f" · and {len(lines) - max_lines} more"
    return Answer(question, "text", text + ".", moments, intent="summary")


# ------------------------------------------------------------------ retrieval
def attend(mem: DeltaMem, query: torch.Tensor, top_k: int = 5, *, min_gap: float = DEFAULT_MIN_GAP,
           words: list[str] | None = None, mark: bool = True) -> list[Moment]:
    """Attend with ``query`` (``[D]``, or ``[Q, D]`` e.g. a VLM's query tokens) over the compressed
    state and return the ``top_k`` best moments, best first.

    The three tiers of :meth:`DeltaMem.read`: slots (softmax of ``q·k/τ + log(count)``, so a slot
    that absorbed many tokens weighs more), timeline segments and pinned events (cosine). Each
    candidate's ``score`` is its cosine with the query (for ``[Q, D]``: the best over the ``Q``
    rows). ``words`` (e.g. colour names) found in a pinned event's description raise that event's
    score. Non-maximum suppression in time: a moment whose time is within ``min_gap`` s of a better
    kept one, or whose span overlaps one by half or more, is dropped. The slots read are marked as
    used (:meth:`DeltaMem.mark_retrieved`) unless ``mark`` is False. Nothing is decoded again.
    """
    if top_k <= 0:
        return []
    q = query.reshape(-1, mem.layout.dim) if query.ndim == 2 else query.reshape(1, -1)
    r = mem.read(q, top_k=max(top_k * 3, 8))
    cands: list[Moment] = []
    ev_scores: dict[int, float] = {}
    seg_scores: dict[int, float] = {}
    slot_scores: dict[int, float] = {}
    seg_times: dict[int, float] = {}  # segment → the time of the best point of its line (best query row)
    for hits, out, at in ((r.events, ev_scores, None), (r.segments, seg_scores, seg_times),
                          (r.slots, slot_scores, None)):
        times = hits.t.tolist() if at is not None else None
        for q_row, (row_i, row_c) in enumerate(zip(hits.index.tolist(), hits.cos.tolist())):
            for k, (i, c) in enumerate(zip(row_i, row_c)):
                if c > out.get(i, -2.0):
                    out[i] = c
                    if at is not None:
                        at[i] = times[q_row][k]
    events = {e.index: e for e in mem.events()} if (ev_scores or words) else {}
    if words:
        for ev, hit in _matching_events(mem, words):
            ev_scores[ev.index] = max(ev_scores.get(ev.index, 0.0), 0.5 + 0.5 * hit)
    spans = _visit_spans(mem) if ev_scores else {}
    for i, c in ev_scores.items():
        ev = events[i]
        start, end = spans.get(i, (ev.t, max(ev.t, ev.t_end)))
        cands.append(Moment(t=ev.t, start=start, end=end, score=c, event=ev.kind,
                            description=ev.description, thumb_id=ev.thumb))
    cands += _span_matches(seg_scores, mem.seg_start, mem.seg_end, mem.seg_thumb, at=seg_times)
    cands += _span_matches(slot_scores, mem.slot_t_first, mem.slot_t_last, mem.slot_thumb)
    if slot_scores and mark:
        mem.mark_retrieved(torch.tensor(sorted(slot_scores), dtype=torch.int64))
    return nms(cands, top_k, min_gap)


def _span_matches(scores: dict[int, float], start: torch.Tensor, end: torch.Tensor,
                  thumb: torch.Tensor, *, at: dict[int, float] | None = None) -> list[Moment]:
    """``match`` moments for the rows of one tier (segments or slots): row → score.

    ``at``: row → the moment's ``t`` (a timeline segment: the time of the best point of its line,
    :meth:`DeltaMem.seg_locate`); rows without one (a slot) take the start of their span (the first
    time its content was seen)."""
    if not scores:
        return []
    at = at or {}
    rows = torch.tensor(sorted(scores), dtype=torch.int64)
    st, en, th = start[rows].tolist(), end[rows].tolist(), thumb[rows].tolist()
    return [Moment(t=min(max(at.get(i, st[j]), st[j]), en[j]), start=st[j], end=en[j], score=scores[i],
                   event="match", thumb_id=th[j])
            for j, i in enumerate(rows.tolist())]


def nms(cands: list[Moment], top_k: int, min_gap: float = DEFAULT_MIN_GAP) -> list[Moment]:
    """Best first; drop a moment within ``min_gap`` s (by ``t``) of, or overlapping by half or more,
    a better kept one. Ties keep the earlier moment."""
    kept: list[Moment] = []
    for m in sorted(cands, key=lambda m: (-m.score, m.t)):
        if all(abs(m.t - k.t) >= min_gap and _overlap(m, k) < 0.5 for k in kept):
            kept.append(m)
            if len(kept) == top_k:
                break
    return kept


def retrieve(mem: DeltaMem, vec: torch.Tensor, *, top_k: int = 5, words: list[str] | None = None,
             min_gap: float = DEFAULT_MIN_GAP) -> list[Moment]:
    """Top moments for a ``[D]`` query: :func:`attend` (kept for callers of the earlier API)."""
    return attend(mem, vec, top_k, min_gap=min_gap, words=words)


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
