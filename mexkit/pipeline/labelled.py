"""The labelled samples of a store, as the training and pre-training commands see them.

A sample's class comes from a label scheme (:mod:`mexkit.labels`) applied to
its emotion, action units and dataset, or, without a scheme, from its stored
``label``; samples outside the scheme are excluded, each with its reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LabelError
from ..labels import get_scheme

__all__ = ["SampleTable", "sample_table"]

logger = logging.getLogger("mexkit")


@dataclass
class SampleTable:
    """The labelled samples of a store that a protocol splits."""

    sample_ids: list[str]
    subjects: list[str]
    datasets: list[str]
    labels: list[str]
    classes: list[str]
    excluded: dict[str, str]

    @property
    def y(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[v] for v in self.labels], dtype=np.int64)


def sample_table(store: Any, *, scheme: str | None) -> SampleTable:
    """Collect subject, dataset and class of every sample of ``store``.

    With ``scheme`` the class comes from the label scheme applied to the
    sample's emotion, action units and dataset; samples outside the scheme
    are excluded and reported.  Without it, the stored ``label`` is used.
    """
    sids, subjects, datasets, labels = [], [], [], []
    excluded: dict[str, str] = {}
    classes: list[str] | None = None
    get = None
    if scheme is not None:
        sch = get_scheme(scheme)
        classes = list(sch.classes)
        get = sch.label
    for sid in store.sample_ids:
        a = store[sid].attrs
        if get is not None:
            try:
                label = get(emotion=a.get("emotion"), aus=a.get("aus"),
                            dataset=a.get("dataset"), objective_class=a.get("objective_class"))
            except LabelError as exc:
                excluded[sid] = str(exc)
                continue
        else:
            label = a.get("label")
            if label in (None, "") and a.get("intervals"):
                excluded[sid] = (f"a whole video holding {len(a['intervals'])} annotated "
                                 "interval(s) (mexkit crop --unit video); crop with --unit "
                                 "clip for one labelled sample per interval")
                continue
            if label in (None, ""):
                excluded[sid] = "no label (give --scheme to derive one from the emotion)"
                continue
        sids.append(sid)
        subjects.append(str(a.get("subject", "")))
        datasets.append(str(a.get("dataset", "")))
        labels.append(str(label))
    if classes is None:
        classes = sorted(set(labels))
    for sid, why in excluded.items():
        logger.warning("sample %s excluded: %s", sid, why)
    if len(set(labels)) < 2:  # the store's content, not the command line: exit status 1
        raise LabelError(
            f"{store.path}: {len(sids)} labelled sample(s) in {len(set(labels))} class(es); "
            "training needs at least two classes."
        )
    return SampleTable(sids, subjects, datasets, labels, classes, excluded)
