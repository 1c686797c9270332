"""Key-frame selection and construction: MERSiamC3D's adaptive key-frames, TAS,
ATNet's apex window and uniform sampling.

The adaptive construction of MERSiamC3D (Algorithm 1 of the paper) is split
into a pure plan (:func:`adaptive_plan`: which times, made from which frames)
and its execution with a frame interpolator (:func:`build_keyframes`), so the
index logic can be checked by hand and the interpolator swapped.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import check_int, check_ndim, check_option, check_range
from ..errors import ParameterError

__all__ = [
    "KeyFrame",
    "adaptive_plan",
    "build_keyframes",
    "adaptive_keyframes",
    "tas_indices",
    "apex_window",
    "uniform_indices",
]


@dataclass(frozen=True)
class KeyFrame:
    """One entry of a key-frame plan.

    Attributes
    ----------
    index : int
        Algorithm 1's integer time index of the frame (0-based position in the
        clip): the original frame itself, or for a synthesised frame the floor
        of the midpoint of its parents' indices. TAS takes this frame.
    time : float
        The exact time (in frames, 0-based) that the frame's content stands
        for: equal to ``index`` for an original frame, the mean of the parents'
        times for a synthesised one. It can differ from ``index`` by a frame or
        more, because Algorithm 1 floors every midpoint of indices along a
        chain of halvings (``index`` 21, ``time`` 22.125 for onset 2, apex 9,
        offset 30).
    parents : tuple of int or None
        Positions in the plan of the two frames whose temporal midpoint this
        frame is (earlier one first); ``None`` for an original frame.
    """

    index: int
    time: float
    parents: tuple[int, int] | None = None


def _one_side(anchor: int, apex: int, count: int) -> list[dict]:
    """Algorithm 1 for one side of the apex (onset-apex or apex-offset).

    Returns the generated nodes in time order; each node is a dict with
    ``index``, ``time`` and ``parents`` given as node keys ("anchor", "apex"
    or ("gen", i) for the i-th generated node of this side).
    """
    nodes: list[dict] = []
    times = {"anchor": float(anchor), "apex": float(apex)}

    def key_time(key: Any) -> float:
        return times[key] if isinstance(key, str) else nodes[key[1]]["time"]

    # Stage 1 (steps 6-11): halve repeatedly towards the anchor.
    t1, t2, k2 = anchor, apex, "apex"
    made = 0
    while count > made:
        m = (t1 + t2) // 2
        if abs(m - t1) > 1:
            nodes.append({"index": m, "time": 0.5 * (times["anchor"] + key_time(k2)),
                          "parents": ("anchor", k2)})
            k2 = ("gen", len(nodes) - 1)
            t2 = m
            made += 1
            continue
        # Stage 2 (steps 13-22), run once: one midpoint in each gap between
        # consecutive generated frames (in time order) whose midpoint index is
        # more than one frame from the gap's start, until ``count`` is reached.
        order = sorted(range(len(nodes)), key=lambda i: nodes[i]["index"])
        extra = []
        t = 1
        while t < len(order) and made < count:
            lo, hi = nodes[order[t - 1]], nodes[order[t]]
            mid = (hi["index"] + lo["index"]) // 2
            if abs(mid - lo["index"]) > 1:
                extra.append({"index": mid, "time": 0.5 * (lo["time"] + hi["time"]),
                              "parents": (("gen", order[t - 1]), ("gen", order[t]))})
                made += 1
            t += 1
        nodes.extend(extra)
        break
    return nodes


def adaptive_plan(onset: int, apex: int | None, offset: int, *, n_frames: int = 11
                  ) -> list[KeyFrame]:
    """Plan MERSiamC3D's adaptive key-frame sequence (Algorithm 1).

    Parameters
    ----------
    onset, apex, offset : int
        0-based frame indices ``t_s <= t_p <= t_e`` of the clip. ``apex=None``
        uses the middle frame ``(onset + offset) // 2``, as MERSiamC3D does for
        SMIC, whose apex is not annotated.
    n_frames : int
        Length of the sequence (11 in the paper: 3 annotated frames and 8
        intermediate ones; at least 3).

    Returns
    -------
    plan : list of KeyFrame, length ``n_frames``
        In time order: the onset, the frames generated between onset and apex,
        the apex, those between apex and offset, the offset, then copies of
        the offset frame up to ``n_frames``. ``parents`` refer to positions in
        this list.

    Notes
    -----
    With ``N = t_e - t_s + 1`` and ``n = n_frames - 3``, the onset-apex side
    gets ``N_sp = floor((t_p - t_s + 1) n / N)`` frames and the apex-offset
    side ``N_pe = n - N_sp``. On each side the frame between the anchor
    (onset or offset) and the current frame (starting with the apex) is
    generated at index ``m = floor((t_1 + t_2) / 2)`` and becomes the new
    current frame, as long as ``|m - t_1| > 1``: the frames get denser towards
    the onset and the offset and sparser around the apex, which the paper
    wants. When the gap to the anchor is used up before the quota is, one
    pass over the generated frames (in time order, from the earliest) inserts
    one midpoint in every gap whose midpoint index lies more than one frame
    from the gap's start, until the quota is met. Whatever is still missing
    is made up by padding with the offset frame (steps 29-33).

    Read literally where the pseudo-code is loose: ``/`` is floor division
    (the paper's caption says so); the ordered merge ``U`` keeps frames in
    time order, which makes ``I'[t]``, ``I'[t+1]`` the frames at
    ``T'[t-1]``, ``T'[t]`` as step 17 needs; the second stage only looks at
    gaps between generated frames (the list ``T'`` holds no anchor); and both
    sides are merged into the output whether or not the second stage ran (the
    pseudo-code only merges in step 22). When two annotated frames coincide
    (``apex == onset`` or ``apex == offset``) the frame appears once.

    References
    ----------
    .. [1] MERSiamC3D: "A two-stage 3D CNN based learning method for
       spontaneous micro-expression recognition", Algorithm 1 (adaptive
       construction of key-frames sequence).
    """
    onset = check_int("onset", onset)
    offset = check_int("offset", offset)
    apex = (onset + offset) // 2 if apex is None else check_int("apex", apex)
    n_frames = check_int("n_frames", n_frames)
    check_range("n_frames", n_frames, 3)
    check_range("onset", onset, 0)
    if not onset <= apex <= offset:
        raise ParameterError(
            f"Invalid key frames: expected onset <= apex <= offset, but got onset={onset}, "
            f"apex={apex}, offset={offset}."
        )
    n_between = n_frames - 3
    length = offset - onset + 1
    n_sp = (apex - onset + 1) * n_between // length
    n_pe = n_between - n_sp

    left = _one_side(onset, apex, n_sp)
    right = _one_side(offset, apex, n_pe)

    # Assemble in time order; annotated frames that coincide appear once.
    canon: dict[int, str] = {}
    for name, frame in (("onset", onset), ("apex", apex), ("offset", offset)):
        canon.setdefault(frame, name)
    items: list[tuple[float, tuple[str, Any]]] = [
        (float(frame), ("anchor", name)) for frame, name in canon.items()]
    items += [(node["time"], ("left", i)) for i, node in enumerate(left)]
    items += [(node["time"], ("right", i)) for i, node in enumerate(right)]
    items.sort(key=lambda item: item[0])      # generated times lie strictly between anchors
    position = {key: pos for pos, (_, key) in enumerate(items)}

    def resolve(side: str, ref: Any) -> int:
        if ref == "apex":
            return position[("anchor", canon[apex])]
        if ref == "anchor":
            return position[("anchor", canon[onset if side == "left" else offset])]
        return position[(side, ref[1])]

    plan: list[KeyFrame] = []
    for time, (side, ref) in items:
        if side == "anchor":
            plan.append(KeyFrame(index=int(time), time=time))
            continue
        node = (left if side == "left" else right)[ref]
        a, b = (resolve(side, r) for r in node["parents"])
        plan.append(KeyFrame(index=node["index"], time=node["time"],
                             parents=(min(a, b), max(a, b))))
    while len(plan) < n_frames:
        plan.append(KeyFrame(index=offset, time=float(offset)))
    return plan


def build_keyframes(frames: np.ndarray, plan: list[KeyFrame], *,
                    interpolator: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                    dtype: Any = np.float32) -> np.ndarray:
    """Execute a key-frame plan: take original frames, synthesise the midpoints.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (T, H, W, C)
        The clip the plan's indices refer to, uint8 or float.
    plan : list of KeyFrame
        From :func:`adaptive_plan` (or any plan whose ``parents`` point to
        earlier-resolvable entries).
    interpolator : callable, optional
        ``f(a, b) -> frame`` returning the temporal midpoint of two float32
        frames; :func:`mexkit.temporal.interpolate.interpolate_midpoint` (flow
        based, standing in for the paper's AdaConv) by default. A frame
        synthesised from synthesised frames is computed from them, as in the
        paper (repeated midpoint interpolation); each is computed once.
    dtype : numpy dtype or None
        Output dtype, float32 by default; ``None`` keeps the input's (integer
        types rounded and clipped). Synthesis runs in float32 throughout.

    Returns
    -------
    keyframes : ndarray, shape (len(plan), H, W) or (len(plan), H, W, C)

    References
    ----------
    .. [1] MERSiamC3D, Algorithm 1; S. Niklaus, L. Mai, F. Liu, "Video frame
       interpolation via adaptive convolution", CVPR 2017 (the interpolator
       the paper uses).
    """
    check_ndim("frames", frames, (3, 4), "(T, H, W) or (T, H, W, C)")
    frames = np.asarray(frames)
    if interpolator is None:
        from .interpolate import interpolate_midpoint as interpolator  # start-up: loads OpenCV
    n = frames.shape[0]
    for pos, kf in enumerate(plan):
        if kf.parents is None and not 0 <= kf.index < n:
            raise ParameterError(
                f"Invalid plan: entry {pos} takes frame {kf.index}, but the clip has "
                f"{n} frames."
            )
        if kf.parents is not None and not all(0 <= p < len(plan) and p != pos
                                              for p in kf.parents):
            raise ParameterError(f"Invalid plan: entry {pos} has parents {kf.parents!r}.")
    cache: dict[int, np.ndarray] = {}

    def get(pos: int, depth: int = 0) -> np.ndarray:
        if pos in cache:
            return cache[pos]
        if depth > len(plan):
            raise ParameterError("Invalid plan: its parents form a cycle.")
        kf = plan[pos]
        if kf.parents is None:
            frame = frames[kf.index].astype(np.float32)
        else:
            frame = np.asarray(interpolator(get(kf.parents[0], depth + 1),
                                            get(kf.parents[1], depth + 1)), dtype=np.float32)
        cache[pos] = frame
        return frame

    out = np.stack([get(i) for i in range(len(plan))])
    out_dtype = np.dtype(frames.dtype if dtype is None else dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(out_dtype)
    return out.astype(out_dtype, copy=False)


def adaptive_keyframes(frames: np.ndarray, onset: int, apex: int | None, offset: int, *,
                       n_frames: int = 11,
                       interpolator: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                       dtype: Any = np.float32) -> np.ndarray:
    """MERSiamC3D's adaptive key-frame sequence of a clip.

    Equivalent to ``build_keyframes(frames, adaptive_plan(onset, apex, offset,
    n_frames=n_frames), interpolator=interpolator, dtype=dtype)``; see those
    functions for the parameters. Returns ``(n_frames, H, W[, C])``.

    References
    ----------
    .. [1] MERSiamC3D, Algorithm 1 (adaptive construction of key-frames).
    """
    plan = adaptive_plan(onset, apex, offset, n_frames=n_frames)
    return build_keyframes(frames, plan, interpolator=interpolator, dtype=dtype)


def tas_indices(onset: int, apex: int | None, offset: int, *, n_frames: int = 11
                ) -> np.ndarray:
    """Time-adaptive sampling (TAS): original frames at the adaptive plan's times.

    MERSiamC3D's baseline: the same time indices as :func:`adaptive_plan`,
    but each key frame is the original frame at that index instead of a
    synthesised one. The indices are Algorithm 1's integer time indices (the
    floor of each midpoint of indices), which can lie a frame or so before the
    exact times of the synthesised frames (``KeyFrame.time``).

    Parameters
    ----------
    onset, apex, offset : int
        0-based indices, ``onset <= apex <= offset`` (``apex=None``: middle frame).
    n_frames : int
        Sequence length (11 in the paper).

    Returns
    -------
    indices : ndarray of int, shape (n_frames,)
        Non-decreasing 0-based indices (the offset repeats as padding).

    References
    ----------
    .. [1] MERSiamC3D, Section 5.3.2 (TAS against the adaptive construction).
    """
    plan = adaptive_plan(onset, apex, offset, n_frames=n_frames)
    return np.array([kf.index for kf in plan], dtype=np.int64)


def apex_window(apex: int, n: int, *, length: int = 65, edge: str = "shift") -> np.ndarray:
    """ATNet's window of ``length`` consecutive frames centred on the apex.

    Parameters
    ----------
    apex : int
        0-based apex index in a clip of ``n`` frames (for SMIC, the middle frame).
    n : int
        Number of frames in the clip.
    length : int
        Window length: 65 in ATNet (32 frames either side of the apex, giving
        64 flows).
    edge : {"shift", "repeat"}
        Near the clip's ends, ``"shift"`` (default) slides the window into the
        clip, keeping ``length`` distinct frames with the apex off centre;
        ``"repeat"`` keeps the apex at the centre and repeats the first or last
        frame. A clip shorter than ``length`` repeats its end frames in both
        modes (the window is then centred on the apex).

    Returns
    -------
    indices : ndarray of int, shape (length,)
        Non-decreasing 0-based indices within ``[0, n - 1]``.

    References
    ----------
    .. [1] M. Peng, C. Wang, T. Bi, Y. Shi, X. Zhou, T. Chen, "A novel
       apex-time network for cross-dataset micro-expression recognition",
       ACII 2019, Section 3.1.
    """
    apex = check_int("apex", apex)
    n = check_int("n", n)
    length = check_int("length", length)
    check_option("edge", edge, ("shift", "repeat"))
    check_range("n", n, 1)
    check_range("length", length, 1)
    check_range("apex", apex, 0, n - 1)
    start = apex - length // 2
    if edge == "shift" and n >= length:
        start = min(max(start, 0), n - length)
    return np.clip(np.arange(start, start + length), 0, n - 1).astype(np.int64)


def uniform_indices(n: int, k: int) -> np.ndarray:
    """``k`` frame indices spread uniformly over a clip of ``n`` frames.

    ``round(linspace(0, n - 1, k))`` (half to even): the first and the last
    frame are always included.

    Parameters
    ----------
    n : int
        Number of frames (at least 1).
    k : int
        Number of indices (at least 1; ``k = 1`` gives the first frame). When
        ``k > n`` some frames repeat.

    Returns
    -------
    indices : ndarray of int, shape (k,)
        Non-decreasing 0-based indices.
    """
    n = check_int("n", n)
    k = check_int("k", k)
    check_range("n", n, 1)
    check_range("k", k, 1)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    return np.rint(np.linspace(0.0, n - 1.0, k)).astype(np.int64)
