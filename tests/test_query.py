"""Intents and grounding on a memory filled by hand (no video): times must come back exactly."""

import pytest
import torch

from streamvid.memory import DeltaMem, MemoryLayout
from streamvid.models.base import l2n
from streamvid.query import answer_image, answer_text
from streamvid.types import CHANNELS, Encoded

D = 16


def signals(**kw):
    base = {"motion": 0.0, "person": 0.0, "face": 0.0, "brightness": 0.6, "scene_change": 0.0}
    base.update(kw)
    return [base[c] for c in CHANNELS]


@pytest.fixture()
def mem():
    """0–10 s scene A, quiet; 10–20 s scene A with a person moving; 20 s a cut to scene B, dark."""
    torch.manual_seed(0)
    m = DeltaMem(MemoryLayout.from_budget(2**19, D))
    a, b = l2n(torch.randn(D)), l2n(torch.randn(D))
    for i in range(60):
        t = i * 0.5
        scene = a if t < 20 else b
        tokens = l2n(scene + 0.05 * torch.randn(8, D))
        if t < 10:
            sig = signals()
        elif t < 20:
            sig = signals(motion=0.05, person=1.0)
        else:
            sig = signals(brightness=0.1, scene_change=1.0 if t == 20 else 0.0)
        m.update(t, Encoded(tokens, l2n(tokens.mean(0))), sig, boundary=t in (10.0, 20.0))
    m.pin(10.0, "entered", l2n(torch.randn(D)), "person in red top and blue trousers", None, 0.9, track_id=1)
    m.pin(19.5, "left", l2n(torch.randn(D)), "person in red top and blue trousers", None, 0.8, track_id=1)
    return m, a, b


def ask(mem, q, embed=None):
    return answer_text(mem, q, embed, encoder_name="classic")


@pytest.mark.parametrize("q", ["who entered?", "Who came in", "who arrived?", "who walked in"])
def test_entered(mem, q):
    ans = ask(mem[0], q)
    assert ans.intent == "entered"
    assert [(m.t, m.start, m.end, m.event) for m in ans.moments] == [(10.0, 10.0, 19.5, "entered")]
    assert "1 person entered" in ans.answer and "00:00:10.0" in ans.answer and "red top" in ans.answer


@pytest.mark.parametrize("q", ["who left?", "who went out", "who exited?", "who departed"])
def test_left(mem, q):
    ans = ask(mem[0], q)
    assert ans.intent == "left" and [m.t for m in ans.moments] == [19.5]


def test_concepts(mem):
    m = mem[0]
    motion = ask(m, "when was there motion?")
    assert motion.intent == "concept" and [(x.start, x.end) for x in motion.moments] == [(10.0, 19.5)]
    person = ask(m, "when was there a person?")
    assert [(x.start, x.end) for x in person.moments] == [(10.0, 19.5)]
    dark = ask(m, "when was it dark?")
    assert [(x.start, x.end) for x in dark.moments] == [(20.0, 29.5)]
    cut = ask(m, "when was there a scene change?")
    assert [x.start for x in cut.moments] == [20.0]
    faces = ask(m, "were there any faces?")
    assert faces.moments == [] and faces.answer.startswith("No face was seen")


def test_retrieval_image_and_honest_answers(mem):
    m, a, b = mem
    img = answer_image(m, "b.png", b)
    assert img.kind == "image" and img.moments[0].start >= 20.0 and img.moments[0].event == "match"
    img_a = answer_image(m, "a.png", a)
    assert img_a.moments[0].end <= 20.0
    red = ask(m, "someone in red", embed=lambda q: l2n(torch.randn(D)))
    assert red.intent == "retrieval" and red.moments[0].description.startswith("person in red")
    assert ask(m, "what is the meaning of life?").intent == "unsupported"
    assert ask(m, "   ").intent == "empty"


def test_retrieval_marks_slots_as_used(mem):
    m, a, _ = mem
    before = m.slot_importance.clone()
    answer_image(m, "a.png", a)
    assert (m.slot_importance > before).any()
