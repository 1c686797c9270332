"""Label schemes against hand-worked examples: emotion spellings, AU strings
as the sheets write them, PSN Table 2 / Table 3, and reporting of misfits."""
from __future__ import annotations

import logging

import pytest

from mexkit.errors import LabelError, ParameterError
from mexkit.io.datasets import Sample
from mexkit.labels import (
    OBJECTIVE_COMBINATIONS,
    apply_scheme,
    get_scheme,
    normalize_emotion,
    objective_class_from_aus,
    parse_aus,
    scheme_names,
)


def sample(sid: str, emotion: str = "", aus: str = "", objective: str | None = None,
           dataset: str = "casme2") -> Sample:
    subject, clip = sid.split("/")
    return Sample(sample_id=f"{dataset}/{sid}", dataset=dataset, subject=subject, clip=clip,
                  source=None, fps=200.0, onset=0, apex=5, offset=10, onset_frame=1,
                  apex_frame=6, offset_frame=11, aus=aus, emotion=emotion,
                  objective_class=objective)


@pytest.mark.parametrize("raw, canonical", [
    ("Happiness ", "happiness"), ("happy", "happiness"), ("  Other", "others"),
    ("others", "others"), ("po", "positive"), ("NE", "negative"), ("sur", "surprise"),
    ("Surprised", "surprise"), ("sad", "sadness"), ("Angry", "anger"), ("fearful", "fear"),
    ("repression", "repression"), ("Contempt", "contempt"), ("", ""), (None, ""),
    ("  Mixed   Feelings ", "mixed feelings"),
])
def test_emotion_spellings(raw, canonical):
    assert normalize_emotion(raw) == canonical


@pytest.mark.parametrize("text, aus", [
    ("4+L10", {4, 10}), ("R12", {12}), ("AU1+AU2", {1, 2}), ("1+2+4", {1, 2, 4}),
    ("12B+14B", {12, 14}), ("L12A+R14", {12, 14}), ("AU 12", {12}), ("4, 7", {4, 7}),
    ("38?", {38}), ("(4)+7", {4, 7}), ("", set()), ("none", set()), (None, set()),
    ([6, 12], {6, 12}),
])
def test_parse_au_strings(text, aus):
    assert parse_aus(text) == frozenset(aus)


def test_unreadable_au_token_is_reported():
    with pytest.raises(LabelError, match=r"'Blink' in '4\+Blink'"):
        parse_aus("4+Blink")


def test_every_table2_combination_maps_to_its_own_class():
    # a listed combination must never be claimed by another class through a
    # sub-combination (e.g. 1+2+4 contains II's 1+2 and V's 1+4 but is VI)
    for cls, combos in OBJECTIVE_COMBINATIONS.items():
        for combo in combos:
            text = "+".join(f"AU{a}" for a in sorted(combo))
            assert objective_class_from_aus(text) == cls, text


@pytest.mark.parametrize("aus, cls, why", [
    ("4+7+43", "III", "43 (eyes closed) is in no combination; 4+7 is anger"),
    ("1+2+4+43", "VI", "largest contained combination 1+2+4"),
    ("4+L10", "IV", "tie of single AUs: AU10 is disgust only, AU4 is shared by four classes"),
    ("R12+4", "I", "tie of single AUs: AU12 is happiness only"),
    ("6+12+15", "I", "6+12 and 6+15 equally specific: Table 2 order"),
    ("R14", "VII", "dimpler alone is in no combination"),
    ("L2", "VII", "AU2 alone is not a Table 2 combination"),
    ("4+5+7+9+25", "IV", "4+5+7+9 (four AUs) beats 25 and 4+5+7"),
])
def test_objective_classes_of_real_au_strings(aus, cls, why):
    assert objective_class_from_aus(aus) == cls, why


def test_objective_needs_aus_or_a_class():
    scheme = get_scheme("objective")
    assert scheme.classes == ("I", "II", "III", "IV", "V", "VI", "VII")
    assert scheme.label(aus="6+12", objective_class="III") == "III"   # sheet's class wins
    assert scheme.label(aus="", objective_class="7") == "VII"
    with pytest.raises(LabelError, match=r"sample 'samm/006/006_1_2' \(samm\): no action"):
        scheme.label(aus="", sample_id="samm/006/006_1_2", dataset="samm")
    with pytest.raises(LabelError, match="objective class 'IX'"):
        scheme.label(objective_class="IX")


@pytest.mark.parametrize("aus, label", [
    ("6+12", "positive"), ("1+2", "surprise"), ("25", "surprise"), ("4+7", "negative"),
    ("1+2+4", "negative"), ("15+17", "negative"), ("R2", "surprise"), ("14", "others"),
])
def test_objective_4_follows_table3(aus, label):
    assert get_scheme("objective-4").label(aus=aus) == label


@pytest.mark.parametrize("name, emotion, label", [
    ("megc3", "repression", "negative"), ("megc3", "Contempt", "negative"),
    ("megc3", "Happiness ", "positive"), ("megc3", "sur", "surprise"),
    ("megc3", "ne", "negative"), ("megc3", "positive", "positive"),
    ("4class", "repression", "others"), ("4class", "tense", "others"),
    ("4class", "sadness", "negative"), ("4class", "happiness", "positive"),
    ("casme2-5", "others", "others"), ("casme2-5", "Repression", "repression"),
    ("samm-5", "Other", "others"), ("samm-5", "Anger", "anger"),
    ("casme3-7", "happy", "happiness"), ("casme3-7", "sad", "sadness"),
    ("casme3-7", "Others", "others"), ("dfme-7", "Contempt", "contempt"),
    ("dfme-7", "happiness", "happiness"),
])
def test_emotion_schemes(name, emotion, label):
    scheme = get_scheme(name)
    assert scheme.label(emotion=emotion) == label
    assert scheme.index(label) == scheme.classes.index(label)


@pytest.mark.parametrize("name, emotion", [
    ("megc3", "others"), ("megc3", "tense"), ("casme2-5", "fear"), ("casme2-5", "sadness"),
    ("samm-5", "disgust"), ("samm-5", "fear"), ("4class", "bored"), ("megc3", ""),
    ("casme3-7", "contempt"), ("dfme-7", "others"), ("megc3", "negative+surprise"),
])
def test_emotions_outside_a_scheme_are_not_guessed(name, emotion):
    with pytest.raises(LabelError, match="sub01/EP01"):
        get_scheme(name).label(emotion=emotion, sample_id="casme2/sub01/EP01")


def test_apply_scheme_skips_and_reports(caplog):
    items = [sample("sub01/a", "happiness"), sample("sub01/b", "others"),
             sample("sub02/c", "disgust"), sample("sub02/d", "fear"),
             sample("sub03/e", "Surprise ")]
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        labelled, skipped = apply_scheme(items, "casme2-5", on_error="skip")
    assert [(s.clip, s.label) for s in labelled] == [("a", "happiness"), ("b", "others"),
                                                      ("c", "disgust"), ("e", "surprise")]
    assert [sid for sid, _ in skipped] == ["casme2/sub02/d"]
    assert "'fear'" in skipped[0][1]
    assert items[0].label is None                      # inputs are not modified
    assert "1 sample(s) left out" in caplog.text
    with pytest.raises(LabelError, match="casme2/sub02/d"):
        apply_scheme(items, "casme2-5")
    megc, left_out = apply_scheme(items, "megc3", on_error="skip")
    assert [s.label for s in megc] == ["positive", "negative", "negative", "surprise"]
    assert [sid for sid, _ in left_out] == ["casme2/sub01/b"]
    dicts, _ = apply_scheme([{"sample_id": "x", "emotion": "po"}], "megc3")
    assert dicts == [{"sample_id": "x", "emotion": "po", "label": "positive"}]


def test_scheme_names_and_errors():
    assert scheme_names() == ["megc3", "4class", "casme2-5", "samm-5", "casme3-7", "dfme-7",
                              "objective", "objective-4"]
    with pytest.raises(ParameterError, match="'scheme' parameter.*megc3"):
        get_scheme("7class")
    with pytest.raises(ParameterError, match="on_error"):
        apply_scheme([], "megc3", on_error="ignore")
    with pytest.raises(LabelError, match="not a class"):
        get_scheme("megc3").index("others")
