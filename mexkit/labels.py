"""Label schemes: from a sample's emotion or action units to a class label.

Pure functions over strings; nothing here opens a file.  A scheme is picked
by name (:func:`scheme_names`, :func:`get_scheme`) and applied to samples with
:func:`apply_scheme`.  A sample whose emotion or AUs do not fit the scheme is
never guessed into a class: :class:`~mexkit.errors.LabelError` names the
sample and the value, and ``apply_scheme(..., on_error="skip")`` reports it.

Schemes
-------
``megc3``
    MEGC 2019 three classes: negative (repression, anger, contempt, disgust,
    fear, sadness), positive (happiness), surprise.  SMIC's and CAS(ME)^2's
    own ``negative``/``positive``/``surprise`` map to themselves; ``others``,
    ``tense`` and anything else are excluded.
``4class``
    positive, negative, surprise, others as in AKMNet: tense and repression
    count as others; negative is anger, contempt, disgust, fear, sadness.
``casme2-5``
    CASME II five classes: happiness, surprise, disgust, repression, others.
    Fear and sadness (9 CASME II clips) are excluded, as in the usual
    246-clip protocol.
``samm-5``
    SAMM five classes: happiness, anger, contempt, surprise, others; disgust,
    fear and sadness are excluded (136 of SAMM's 159 clips remain).
``casme3-7``
    CAS(ME)^3's seven emotions: anger, disgust, fear, happiness, others,
    sadness, surprise (its sheets write ``happy`` and ``sad``).
``dfme-7``
    DFME's seven emotions: happiness, anger, contempt, disgust, fear,
    sadness, surprise.
``objective``
    Objective classes I-VII (Davison et al. 2018) from action units with the
    combinations of PSN Table 2.  A sample that carries an objective class
    (SAMM's sheet) keeps it.
``objective-4``
    PSN Table 3: I -> positive, II -> surprise, III-VI -> negative, VII ->
    others; a class-VII sample that shows AU2 is surprise (Table 3 lists AU2
    among the surprise criteria).

Emotion spellings are normalised first (:func:`normalize_emotion`): case,
surrounding and repeated spaces, ``happy``/``happiness``, ``other``/
``others``, SMIC's ``po``/``ne``/``sur``, ``sad``, ``angry``, ``fearful``,
``disgusted``, ``surprised``, ``repressed``.

Matching AU combinations (objective classes)
--------------------------------------------
Table 2 lists AU combinations per class but real samples often carry more
AUs than any listed combination (``4+7+43``) or AUs of two classes.  Our
reading, applied after :func:`parse_aus` reduces the AU string to a set of
AU numbers (sides L/R/B/T/U and intensities A-E dropped):

1. a class *matches* when one of its combinations is contained in the
   sample's AU set;
2. the class whose largest contained combination has the most AUs wins
   (``1+2+4`` is VI fear, not II surprise through ``1+2``);
3. ties go to the class whose contained combinations cover the sample's AUs
   most specifically: each covered AU counts ``1 / (number of classes I-VI
   whose combinations use it)``, so ``4+L10`` is IV disgust (AU10 belongs to
   IV alone; AU4 to four classes);
4. remaining ties go to the earlier class in Table 2's order;
5. no match at all gives VII.

References
----------
Wang, S.-J. et al. "PSN: parallel spatiotemporal network for micro-expression
recognition" (Tables 2 and 3).  Davison, A., Merghani, W., Yap, M. H.
"Objective classes for micro-facial expression recognition", J. Imaging 4,
119 (2018).  See, J. et al. "MEGC 2019 - the second facial micro-expressions
grand challenge", FG 2019.  Peng, M. et al. "Recognizing micro-expression in
video clip with adaptive key-frame mining" (AKMNet).  Li, J. et al. "CAS(ME)^3: a
third generation facial spontaneous micro-expression database with depth
information and high ecological validity", IEEE TPAMI 45 (2023).  Zhao, S. et
al. "DFME: a new benchmark for dynamic facial micro-expression recognition",
IEEE TAC (2023).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ._validate import check_option
from .errors import LabelError, ParameterError

__all__ = [
    "LabelScheme",
    "OBJECTIVE_COMBINATIONS",
    "normalize_emotion",
    "parse_aus",
    "objective_class_from_aus",
    "scheme_names",
    "get_scheme",
    "apply_scheme",
]

logger = logging.getLogger("mexkit")

_EMOTION_ALIASES = {
    "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "positive": "positive", "po": "positive", "pos": "positive",
    "negative": "negative", "ne": "negative", "neg": "negative",
    "surprise": "surprise", "sur": "surprise", "surprised": "surprise",
    "other": "others", "others": "others",
    "repression": "repression", "repressed": "repression",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "sadness": "sadness", "sad": "sadness",
    "anger": "anger", "angry": "anger",
    "contempt": "contempt",
    "tense": "tense", "tension": "tense",
}


def normalize_emotion(emotion: str | None) -> str:
    """Canonical spelling of an emotion word (``""`` for none).

    Lower-cases, strips and collapses spaces, then maps known variants
    (``"Happiness "`` -> ``"happiness"``, ``"po"`` -> ``"positive"``,
    ``"Other"`` -> ``"others"``).  Unknown words come back cleaned but
    otherwise unchanged.
    """
    text = re.sub(r"\s+", " ", str(emotion or "")).strip().lower()
    return _EMOTION_ALIASES.get(text, text)


_AU_TOKEN = re.compile(r"(?i)^(?:AU)?([LRBTU])?(?:AU)?(\d{1,2})([A-E])?$")


def parse_aus(aus: str | Iterable[int] | None) -> frozenset[int]:
    """The set of AU numbers in an AU string.

    Accepts CASME II / SAMM / CAS(ME)^2 spellings: ``"4+L10"``, ``"R12"``,
    ``"AU1+AU2"``, ``"1+2+4"``, ``"12B+14B"`` (intensity), ``"L12A"``,
    ``"4, 7"``, ``"AU 12"``, uncertain codes such as ``"38?"``, and integers.
    Sides and intensities are dropped.

    Raises
    ------
    LabelError
        A token that is not an AU code (the message quotes the string).
    """
    if aus is None:
        return frozenset()
    if not isinstance(aus, str):
        try:
            return frozenset(int(a) for a in aus)
        except (TypeError, ValueError):
            raise LabelError(f"action units {aus!r} are not AU numbers") from None
    text = re.sub(r"(?i)\bAU\s+(?=\d)", "AU", aus.strip())
    text = re.sub(r"[?*()\[\]]", "", text)
    if text.lower() in ("", "none", "-", "/", "n/a", "na", "nan"):
        return frozenset()
    out = set()
    for token in re.split(r"[+,;/&\s]+|\band\b", text):
        if not token:
            continue
        m = _AU_TOKEN.match(token)
        if m is None:
            raise LabelError(f"cannot read action unit {token!r} in {aus!r}")
        out.add(int(m.group(2)))
    return frozenset(out)


def _combos(*items: str) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(int(a) for a in item.split("+")) for item in items)


# PSN Table 2 (after Davison et al. 2018); class VII is everything else.
OBJECTIVE_COMBINATIONS: dict[str, tuple[frozenset[int], ...]] = {
    "I": _combos("6", "12", "6+12", "6+7+12", "7+12"),
    "II": _combos("1+2", "5", "25", "1+2+25", "25+26", "5+24"),
    "III": _combos("23", "4", "4+7", "4+5+7", "17+24", "4+6+7", "4+38"),
    "IV": _combos("10", "9", "4+9", "4+40", "4+5+40", "4+7+9", "4+9+17", "4+7+10",
                  "4+5+7+9", "7+10"),
    "V": _combos("1", "15", "1+4", "6+15", "15+17"),
    "VI": _combos("1+2+4", "20"),
}
OBJECTIVE_CLASSES = ("I", "II", "III", "IV", "V", "VI", "VII")

_AU_CLASS_COUNT: dict[int, int] = {}
for _combos_of_class in OBJECTIVE_COMBINATIONS.values():
    for _au in frozenset().union(*_combos_of_class):
        _AU_CLASS_COUNT[_au] = _AU_CLASS_COUNT.get(_au, 0) + 1


def objective_class_from_aus(aus: str | Iterable[int]) -> str:
    """Objective class ``"I"`` .. ``"VII"`` of an AU string (PSN Table 2).

    See the module notes for how samples with extra or mixed AUs are
    matched.

    Raises
    ------
    LabelError
        No action units, or a token that is not an AU.

    Examples
    --------
    >>> objective_class_from_aus("6+12")
    'I'
    >>> objective_class_from_aus("AU1+AU2+AU4")
    'VI'
    >>> objective_class_from_aus("4+L10")
    'IV'
    >>> objective_class_from_aus("R14")
    'VII'
    """
    found = parse_aus(aus)
    if not found:
        raise LabelError(f"no action units in {aus!r}")
    best: tuple[tuple[int, Fraction, int], str] | None = None
    for order, (cls, combos) in enumerate(OBJECTIVE_COMBINATIONS.items()):
        contained = [c for c in combos if c <= found]
        if not contained:
            continue
        covered = frozenset().union(*contained)
        specificity = sum((Fraction(1, _AU_CLASS_COUNT[a]) for a in covered), Fraction(0))
        key = (max(len(c) for c in contained), specificity, -order)
        if best is None or key > best[0]:
            best = (key, cls)
    return "VII" if best is None else best[1]


# ---------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelScheme:
    """A named mapping from sample annotations to an ordered set of classes.

    Attributes
    ----------
    name : str
    classes : tuple of str
        Class names in label-index order.
    description : str
    """

    name: str
    classes: tuple[str, ...]
    description: str
    _rule: Callable[[dict[str, Any]], str] = field(repr=False, compare=False)

    def label(self, *, emotion: str | None = None, aus: str | None = None,
              dataset: str | None = None, objective_class: str | None = None,
              sample_id: str | None = None) -> str:
        """The class of one sample.

        Parameters
        ----------
        emotion : str, optional
            The sheet's emotion (any spelling :func:`normalize_emotion` knows).
        aus : str, optional
            The sheet's action units.
        dataset : str, optional
            Dataset name, for messages.
        objective_class : str, optional
            A given objective class (``"I"`` .. ``"VII"``).
        sample_id : str, optional
            Named in error messages.

        Returns
        -------
        str
            One of :attr:`classes`.

        Raises
        ------
        LabelError
            The sample does not fit the scheme (message names sample and value).
        """
        info = {"emotion": emotion, "aus": aus, "dataset": dataset,
                "objective_class": objective_class}
        try:
            out = self._rule(info)
        except LabelError as exc:
            who = f"sample {sample_id!r}" if sample_id else "sample"
            if dataset:
                who += f" ({dataset})"
            raise LabelError(f"{who}: {exc} (label scheme {self.name!r})") from None
        assert out in self.classes, (out, self.classes)
        return out

    def index(self, label: str) -> int:
        """Position of ``label`` in :attr:`classes`."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise LabelError(f"label {label!r} is not a class of scheme {self.name!r} "
                             f"({', '.join(self.classes)})") from None


def _emotion_rule(mapping: Mapping[str, str], excluded_note: str
                  ) -> Callable[[dict[str, Any]], str]:
    def rule(info: dict[str, Any]) -> str:
        raw = info["emotion"]
        emo = normalize_emotion(raw)
        if not emo:
            raise LabelError("no emotion")
        if emo not in mapping:
            raise LabelError(f"emotion {raw!r} is {excluded_note}")
        return mapping[emo]
    return rule


def _objective_rule(info: dict[str, Any]) -> str:
    given = info["objective_class"]
    if given not in (None, ""):
        text = str(given).strip().upper()
        if text in OBJECTIVE_CLASSES:
            return text
        if text in {"1", "2", "3", "4", "5", "6", "7"}:
            return OBJECTIVE_CLASSES[int(text) - 1]
        raise LabelError(f"objective class {given!r} is not one of I-VII")
    if info["aus"] in (None, ""):
        raise LabelError("no action units and no objective class")
    return objective_class_from_aus(info["aus"])


_OBJECTIVE_TO_4 = {"I": "positive", "II": "surprise", "III": "negative", "IV": "negative",
                   "V": "negative", "VI": "negative", "VII": "others"}


def _objective4_rule(info: dict[str, Any]) -> str:
    cls = _objective_rule(info)
    out = _OBJECTIVE_TO_4[cls]
    if cls == "VII" and info["aus"] not in (None, ""):
        try:
            if 2 in parse_aus(info["aus"]):
                out = "surprise"
        except LabelError:
            pass  # the class came from the sheet; unreadable AUs add nothing
    return out


_NEG6 = ("repression", "anger", "contempt", "disgust", "fear", "sadness")


def _own_emotions(name: str, classes: tuple[str, ...], description: str,
                  excluded_note: str) -> LabelScheme:
    """A scheme whose classes are the emotions of the same names (others excluded)."""
    return LabelScheme(name, classes, description,
                       _emotion_rule({e: e for e in classes}, excluded_note))

_SCHEMES: dict[str, LabelScheme] = {
    "megc3": LabelScheme(
        "megc3", ("negative", "positive", "surprise"),
        "MEGC 2019 composite: negative (repression, anger, contempt, disgust, fear, "
        "sadness), positive (happiness), surprise; others excluded",
        _emotion_rule({**{e: "negative" for e in _NEG6}, "negative": "negative",
                       "happiness": "positive", "positive": "positive",
                       "surprise": "surprise"},
                      "not in the MEGC 2019 classes (excluded)")),
    "4class": LabelScheme(
        "4class", ("positive", "negative", "surprise", "others"),
        "AKMNet four classes: positive, negative, surprise, others (tense and repression "
        "are others)",
        _emotion_rule({"happiness": "positive", "positive": "positive",
                       **{e: "negative" for e in ("anger", "contempt", "disgust", "fear",
                                                  "sadness", "negative")},
                       "surprise": "surprise", "others": "others", "tense": "others",
                       "repression": "others"},
                      "not a positive/negative/surprise/others emotion")),
    "casme2-5": _own_emotions(
        "casme2-5", ("happiness", "surprise", "disgust", "repression", "others"),
        "CASME II five classes; fear and sadness excluded",
        "not one of CASME II's five classes (excluded)"),
    "samm-5": _own_emotions(
        "samm-5", ("happiness", "anger", "contempt", "surprise", "others"),
        "SAMM five classes; disgust, fear and sadness excluded",
        "not one of SAMM's five classes (excluded)"),
    "casme3-7": _own_emotions(
        "casme3-7", ("anger", "disgust", "fear", "happiness", "others", "sadness", "surprise"),
        "CAS(ME)^3 seven emotions", "not one of CAS(ME)^3's seven emotions"),
    "dfme-7": _own_emotions(
        "dfme-7", ("happiness", "anger", "contempt", "disgust", "fear", "sadness", "surprise"),
        "DFME seven emotions", "not one of DFME's seven emotions"),
    "objective": LabelScheme(
        "objective", OBJECTIVE_CLASSES,
        "objective classes I-VII from action units (PSN Table 2, Davison et al. 2018)",
        _objective_rule),
    "objective-4": LabelScheme(
        "objective-4", ("positive", "negative", "surprise", "others"),
        "four classes from the objective classes (PSN Table 3)", _objective4_rule),
}


def scheme_names() -> list[str]:
    """Names accepted by :func:`get_scheme`."""
    return list(_SCHEMES)


def get_scheme(name: str) -> LabelScheme:
    """The label scheme called ``name`` (see :func:`scheme_names`)."""
    check_option("scheme", name, scheme_names())
    return _SCHEMES[name]


def _with_label(sample: Any, label: str) -> Any:
    if dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        if "label" not in {f.name for f in dataclasses.fields(sample)}:
            raise ParameterError(f"samples need a 'label' field; {type(sample).__name__} "
                                 "has none")
        return dataclasses.replace(sample, label=label)
    if isinstance(sample, Mapping):
        return {**sample, "label": label}
    raise ParameterError(f"cannot label a {type(sample).__name__}: expected a dataclass "
                         "with a 'label' field or a mapping")


def _field(sample: Any, name: str) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(name)
    return getattr(sample, name, None)


def apply_scheme(samples: Iterable[Any], name: str, *, on_error: str = "raise"
                 ) -> tuple[list[Any], list[tuple[str, str]]]:
    """Label samples with a scheme.

    Parameters
    ----------
    samples : iterable
        :class:`mexkit.io.datasets.Sample` objects (or any dataclass or mapping
        with ``sample_id``, ``emotion``, ``aus``, ``dataset``,
        ``objective_class`` and ``label``).
    name : str
        Scheme name.
    on_error : {'raise', 'skip'}
        ``'raise'``: the first sample that does not fit raises LabelError.
        ``'skip'``: such samples are left out and reported.

    Returns
    -------
    labelled : list
        Copies of the fitting samples with ``label`` set, in input order.
    skipped : list of (sample_id, reason)
        The samples left out and why.

    Raises
    ------
    LabelError
        ``on_error='raise'`` and a sample does not fit.
    """
    check_option("on_error", on_error, ("raise", "skip"))
    scheme = get_scheme(name)
    labelled, skipped = [], []
    for s in samples:
        sid = _field(s, "sample_id")
        try:
            label = scheme.label(emotion=_field(s, "emotion"), aus=_field(s, "aus"),
                                 dataset=_field(s, "dataset"),
                                 objective_class=_field(s, "objective_class"), sample_id=sid)
        except LabelError as exc:
            if on_error == "raise":
                raise
            skipped.append((str(sid), str(exc)))
            continue
        labelled.append(_with_label(s, label))
    if skipped:
        logger.warning("label scheme %r: %d sample(s) left out (first: %s)", name,
                       len(skipped), skipped[0][1])
    return labelled, skipped
