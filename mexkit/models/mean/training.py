"""MEAN's fold training: from scratch, or from the authors' network (``--weights``).

``mexkit train --model mean --weights FILE.safetensors`` (a file written by
``mexkit convert`` from one of the authors' Keras networks) starts every fold
from that network: its shared layers (the three streams with their batch
normalisation) are loaded and frozen, as the authors freeze them before
training the recognition head (inductive transfer); its recognition head is
loaded too when it has the same classes (its outputs reordered to the
training's class order), otherwise the
head starts from Glorot initialisation. The head is then trained with the
usual settings.

The weights must not have seen the evaluated subjects: an authors' fold
network ``sN`` was trained on every subject of its dataset but the N-th.

References
----------
.. [1] G.-B. Liong, J. See, C.-S. Chan, "Spot-then-Recognize: A
   Micro-Expression Analysis Network for Seamless Evaluation of Long
   Videos", Signal Process. Image Commun. 110 (2023), section 3.2 (inductive
   transfer); the authors' ``define_model.py`` (``MEAN_Recog_TL``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ...errors import ParameterError
from ...io.checkpoints import load_checkpoint
from ...learn.folds import FoldContext

__all__ = ["fit_fold", "load_mean_weights", "clip_run"]

logger = logging.getLogger("mexkit")


def load_mean_weights(model: Any, path: str | os.PathLike, classes: list[str]) -> list[str]:
    """Load converted MEAN weights into ``model`` and freeze its shared layers.

    Returns the parts loaded (``"shared"``, ``"recognition head"``,
    ``"spotting head"``).
    """
    state, _, meta = load_checkpoint(path)
    if meta.get("model") not in (None, "mean"):
        raise ParameterError(f"{path}: weights of the model {meta.get('model')!r}, not MEAN.")
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k.startswith("streams.")}
    if not shared or set(shared) != {k for k in own if k.startswith("streams.")}:
        raise ParameterError(f"{path}: not MEAN weights (no complete shared layers).")
    loaded = ["shared"]
    take = dict(shared)
    file_classes = list(meta.get("classes") or [])
    # a converted network holds both heads' tensors; its kind says which it really has
    kind = str(meta.get("kind") or "spot_recog")
    head = {k: v for k, v in state.items() if k.startswith("recog_head.")
            and "recog" in kind}
    if head and sorted(file_classes) == sorted(classes) and \
            head["recog_head.5.weight"].shape == own["recog_head.5.weight"].shape:
        # the same classes, perhaps in another order: the output rows follow the names
        rows = [file_classes.index(c) for c in classes]
        head["recog_head.5.weight"] = head["recog_head.5.weight"][rows]
        head["recog_head.5.bias"] = head["recog_head.5.bias"][rows]
        take.update(head)
        loaded.append("recognition head")
    elif head:
        logger.info("mean: the weights' recognition head (%s) does not match the classes %s; "
                    "it starts from initialisation", ", ".join(file_classes) or "?",
                    ", ".join(classes))
    spot = {k: v for k, v in state.items() if k.startswith("spot_head.")
            and "spot" in kind}
    if spot:
        take.update(spot)
        loaded.append("spotting head")
    model.load_state_dict(take, strict=False)
    model.freeze_shared(True)
    return loaded


def clip_run(options: Mapping[str, Any]) -> dict[str, Any]:
    """What ``mexkit train --model mean`` on a store of onset-apex clips runs.

    The recognition network alone: from scratch (the paper's ablation
    "without ITL", Table 9: no spotting stage, so no inductive transfer) or,
    with ``--weights``, on the frozen shared layers of an authors' network
    (transfer from their spotting stage). Warns in the first case: the
    paper's recognition figures come from its two-step training on gap-flow
    stores of the clips (``mexkit flow --pairs gap --features mean``, then
    ``mexkit train``; each clip is a short video spotted with its single
    highest peak).
    """
    transfer = bool(options.get("weights"))
    if not transfer:
        logger.warning(
            "mean: a store of clips trains the recognition network alone, from scratch: the "
            "paper's ablation without inductive transfer (Table 9), not its two-step "
            "training; for that, give the clips' gap flow (`mexkit flow - --pairs gap "
            "--features mean`, README: MEAN recognition), or --weights (an authors' network "
            "from `mexkit convert`)")
    return {"transfer": transfer, "spotting_stage": False,
            "recognition": ("on the frozen shared layers of the --weights network" if transfer
                            else "from scratch (the paper's 'without ITL' ablation)")}


def fit_fold(ctx: FoldContext) -> list[dict[str, Any]]:
    """One fold of MEAN: optional authors' weights (shared layers frozen), then ``fit``."""
    weights = ctx.options.get("weights") or ""
    if weights:
        loaded = load_mean_weights(ctx.model, weights, list(ctx.classes))
        ctx.extra.setdefault("weights_loaded", loaded)
    return ctx.fit(ctx.model, ctx.train, stage="train")
