"""Lazy readers for video files and image-sequence folders.

:func:`open_clip` opens either kind of clip and returns a :class:`Clip` that
reads frames on demand, in RGB order, as uint8 arrays:

- a **video file** (whatever OpenCV's FFmpeg backend reads: ``.mp4``,
  ``.avi``, ``.mov``, ``.wmv``, ...): frames are numbered ``0 .. n - 1``; the
  frame rate comes from the container;
- an **image-sequence folder** (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``,
  ``.tif``, ``.tiff``): images are taken in *natural* order (``img2`` before
  ``img10``) and each keeps the frame number written in its name (the last
  run of digits: ``img46.jpg`` -> 46 in CASME II, ``006_05562.jpg`` -> 5562
  in SAMM, ``image0012345.bmp`` -> 12345 in SMIC).  Hidden files (names
  starting with ``.``, such as macOS ``._img1.jpg``) are ignored.

Positions (``read(i)``, ``read_range(start, stop)``) are always 0-based
indices into the clip; :attr:`Clip.frame_numbers` maps them back to the
dataset's own frame numbers.

Nothing is silently skipped: a missing, empty, truncated or undecodable file,
a folder without images or with images of different sizes, and a video that
opens but yields no frame all raise :class:`~mexkit.errors.MediaError` naming
the file (and the frame index).  A truncated JPEG is recognised by its
missing end-of-image marker (libjpeg would otherwise return a half-grey
image with a warning only), a truncated PNG by its missing ``IEND`` chunk.

The frame count of a video is the container's; a container that claims more
frames than it holds raises :class:`~mexkit.errors.MediaError` when the first
missing frame is read (:meth:`Clip.verify` decodes everything up front).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._validate import check_range
from ..errors import MediaError, ParameterError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Clip",
    "open_clip",
    "list_images",
    "natural_key",
    "frame_number",
]

logger = logging.getLogger("mexkit")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".wmv", ".mkv", ".m4v", ".mpg", ".mpeg", ".flv")

_DIGITS = re.compile(r"(\d+)")
_CHUNK = 1 << 20
# Every container indexes each frame with at least a few bytes (AVI: 16 in idx1,
# MP4: 4 in stsz), so a frame count above size / 4 cannot be true: such a claim
# is never used to allocate anything; the frames are counted by decoding.
_MIN_BYTES_PER_FRAME = 4
# read_range/read_indices allocate their output up front only below this size;
# above it frames are collected as they are decoded (a claim never allocates).
_PREALLOCATE_BYTES = 256 << 20


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value: ``img2`` < ``img10``.

    The name is split into alternating text and digit runs; text compares
    case-insensitively, digits as integers (ties broken by the raw name so
    the order is total).
    """
    parts = _DIGITS.split(name)
    key: list[Any] = []
    for i, part in enumerate(parts):
        key.append(int(part) if i % 2 else part.lower())
    return (tuple(key), name)


def frame_number(name: str) -> int | None:
    """The frame number written in an image name: its last run of digits.

    ``img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562, ``image0012345.bmp`` ->
    12345, ``EP01_12-73.jpg`` -> 73; ``None`` when the stem holds no digit.
    """
    found = _DIGITS.findall(Path(name).stem)
    return int(found[-1]) if found else None


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` in natural order (hidden files ignored).

    Raises
    ------
    MediaError
        If ``folder`` is not a readable directory.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise MediaError(f"cannot list image folder {str(folder)!r}: {exc}") from exc
    names = [n for n in names
             if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    names.sort(key=natural_key)
    return [folder / n for n in names]


def _check_complete(path: Path, data: bytes) -> None:
    """Raise MediaError for a JPEG without EOI or a PNG without IEND."""
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        # Entropy-coded data never contains FF D9 (0xFF is byte-stuffed), so a
        # complete file ends with the EOI marker, possibly followed by padding.
        if not data.startswith(b"\xff\xd8") or b"\xff\xd9" not in data[-64:]:
            raise MediaError(f"truncated or corrupt JPEG {str(path)!r}: "
                             "no end-of-image marker")
    elif suffix == ".png":
        if b"IEND" not in data[-16:]:
            raise MediaError(f"truncated or corrupt PNG {str(path)!r}: no IEND chunk")


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"))


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (after links).

    A FIFO, a device (a link to ``/dev/zero``), a socket or a folder would
    block or never end; it is refused with :class:`MediaError` without a
    byte read.  The file is opened without blocking and checked on the open
    descriptor, so it cannot be swapped between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise MediaError(f"cannot open {str(path)!r}: {exc.strerror or exc}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise MediaError(f"{str(path)!r} is {what}, not a regular file; mexkit reads only "
                         "regular files as frames and videos")
    return os.fdopen(fd, "rb")


def _decode_image(path: Path, index: int, grey: bool) -> np.ndarray:
    import cv2  # start-up: OpenCV, only when frames are decoded

    try:
        with open_regular(path) as fh:
            data = fh.read()
    except MediaError as exc:
        raise MediaError(f"frame {index} of {str(path.parent)!r}: {exc}") from None
    except OSError as exc:
        raise MediaError(f"cannot read frame {index} of {str(path.parent)!r} "
                         f"({path.name!r}): {exc}") from exc
    if not data:
        raise MediaError(f"frame {index} of {str(path.parent)!r} ({path.name!r}) is empty")
    try:
        _check_complete(path, data)
    except MediaError as exc:
        raise MediaError(f"frame {index}: {exc}") from None
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise MediaError(f"cannot decode frame {index} of {str(path.parent)!r} "
                         f"({path.name!r}): corrupt or unsupported image")
    if image.dtype != np.uint8:
        raise MediaError(f"frame {index} of {str(path.parent)!r} ({path.name!r}) has "
                         f"dtype {image.dtype}, expected 8-bit images")
    if not grey:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


class Clip:
    """A lazily read video file or image-sequence folder.

    Use :func:`open_clip` to make one.  Frames are read on demand; a video
    keeps one decoder open (closed by :meth:`close`, on pickling, or when the
    clip is garbage-collected), so reading forward is cheap and reading
    backwards seeks.

    Attributes
    ----------
    path : pathlib.Path
        The video file or folder.
    kind : {'video', 'folder'}
    n_frames : int
        Number of frames T.
    fps : float
        Frames per second.
    frame_numbers : numpy.ndarray of int64, shape (T,)
        The dataset's frame number of each position (from the image names for
        folders, ``0 .. T - 1`` for videos).
    files : list of pathlib.Path
        The image files in order (empty for videos).
    """

    def __init__(self, path: Path, kind: str, n_frames: int, fps: float,
                 frame_numbers: np.ndarray, files: list[Path]) -> None:
        self.path = path
        self.kind = kind
        self.n_frames = int(n_frames)
        self.fps = float(fps)
        self.frame_numbers = frame_numbers
        self.files = files
        self._frame_shape: tuple[int, int] | None = None
        self._cap: Any = None
        self._next = 0  # position the open decoder will return next
        self._hash: str | None = None

    # -- protocol ------------------------------------------------------
    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.read(i)

    def __repr__(self) -> str:
        return (f"Clip({str(self.path)!r}, kind={self.kind!r}, n_frames={self.n_frames}, "
                f"fps={self.fps:g})")

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cap"] = None
        state["_next"] = 0
        return state

    def __del__(self) -> None:  # pragma: no cover - depends on the GC
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Release the video decoder (a no-op for folders)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
            self._next = 0

    # -- shape ---------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every frame (read from the first frame)."""
        if self._frame_shape is None:
            first = self.read(0)
            self._frame_shape = (int(first.shape[0]), int(first.shape[1]))
        return self._frame_shape

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T, H, W, 3)``: the shape of ``read_range(0, len(clip))``."""
        h, w = self.frame_shape
        return (self.n_frames, h, w, 3)

    # -- reading -------------------------------------------------------
    def _check_index(self, index: int) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise ParameterError(f"Invalid frame index for {str(self.path)!r}: expected an "
                                 f"integer, but got {index!r}.")
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise ParameterError(f"Invalid frame index for {str(self.path)!r}: it must lie "
                                 f"in [0, {self.n_frames - 1}], but got {index}.")
        return index

    def _check_shape(self, image: np.ndarray, index: int) -> None:
        hw = (int(image.shape[0]), int(image.shape[1]))
        if self._frame_shape is None:
            self._frame_shape = hw
        elif hw != self._frame_shape:
            where = self.files[index].name if self.files else f"frame {index}"
            raise MediaError(f"frame {index} of {str(self.path)!r} ({where}) is "
                             f"{hw[1]}x{hw[0]} but the clip's frames are "
                             f"{self._frame_shape[1]}x{self._frame_shape[0]} (W x H)")

    def _open_capture(self) -> Any:
        import cv2  # start-up: OpenCV, only when frames are decoded

        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise MediaError(f"cannot open video {str(self.path)!r}")
        return cap

    def _read_video(self, index: int, grey: bool) -> np.ndarray:
        import cv2  # start-up: OpenCV, only when frames are decoded

        if self._cap is None:
            self._cap = self._open_capture()
            self._next = 0
        cap = self._cap
        if index != self._next:
            if index > self._next and index - self._next <= 32:
                while self._next < index:
                    if not cap.grab():
                        self.close()
                        raise MediaError(f"cannot read frame {self._next} of video "
                                         f"{str(self.path)!r} (the container claims "
                                         f"{self.n_frames} frames)")
                    self._next += 1
            else:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != index:
                    # Inexact seek: reopen and decode forward from the start.
                    self.close()
                    self._cap = cap = self._open_capture()
                    for i in range(index):
                        if not cap.grab():
                            self.close()
                            raise MediaError(f"cannot read frame {i} of video "
                                             f"{str(self.path)!r}")
                self._next = index
        ok, frame = cap.read()
        if not ok or frame is None:
            self.close()
            raise MediaError(f"cannot read frame {index} of video {str(self.path)!r} "
                             f"(the container claims {self.n_frames} frames): truncated "
                             "or corrupt")
        self._next = index + 1
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        code = cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(frame, code)

    def _read(self, index: int, grey: bool) -> np.ndarray:
        if self.kind == "folder":
            image = _decode_image(self.files[index], index, grey)
        else:
            image = self._read_video(index, grey)
        self._check_shape(image, index)
        return image

    def read(self, index: int, *, grey: bool = False) -> np.ndarray:
        """Frame at position ``index``.

        Parameters
        ----------
        index : int
            0-based position, ``0 <= index < T``.
        grey : bool, optional
            Return a grey image instead of RGB.

        Returns
        -------
        numpy.ndarray of uint8, shape (H, W, 3) RGB or (H, W) grey
        """
        return self._read(self._check_index(index), grey)

    def read_range(self, start: int = 0, stop: int | None = None, *,
                   grey: bool = False) -> np.ndarray:
        """Frames at positions ``start .. stop - 1`` stacked in one array.

        Parameters
        ----------
        start, stop : int
            ``0 <= start <= stop <= T``; ``stop`` defaults to T.
        grey : bool, optional
            Grey frames instead of RGB.

        Returns
        -------
        numpy.ndarray of uint8, shape (stop - start, H, W, 3) or (stop - start, H, W)
        """
        stop = self.n_frames if stop is None else stop
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ParameterError(f"Invalid value for the {name!r} parameter: expected "
                                     f"an integer, but got {value!r}.")
        check_range("start", int(start), 0, self.n_frames)
        check_range("stop", int(stop), int(start), self.n_frames)
        return self._read_many(range(int(start), int(stop)), grey)

    def _read_many(self, positions: Sequence[int], grey: bool) -> np.ndarray:
        h, w = self.frame_shape
        n = len(positions)
        shape = (n, h, w) if grey else (n, h, w, 3)
        if n * h * w * (1 if grey else 3) <= _PREALLOCATE_BYTES:
            out = np.empty(shape, dtype=np.uint8)
            for k, i in enumerate(positions):
                out[k] = self._read(i, grey)
            return out
        # Large request: memory grows with the frames actually decoded, so a
        # container that claims more frames than it holds fails at its end.
        frames = [self._read(i, grey) for i in positions]
        return np.stack(frames)

    def read_indices(self, indices: Sequence[int], *, grey: bool = False) -> np.ndarray:
        """Frames at arbitrary positions, in the given order.

        Returns
        -------
        numpy.ndarray of uint8, shape (len(indices), H, W, 3) or (len(indices), H, W)
        """
        idx = [self._check_index(i) for i in indices]
        return self._read_many(idx, grey)

    def verify(self) -> int:
        """Decode every frame once; return T or raise MediaError.

        Catches what lazy reading would find later: truncated files, frames
        of another size, a container that claims more frames than it holds.
        """
        for i in range(self.n_frames):
            self._read(i, True)
        if self.kind == "video" and self._cap is not None:
            # A container that under-reports its length is harmless; say so.
            if self._cap.grab():
                logger.debug("video %s holds more frames than its container claims (%d)",
                             self.path, self.n_frames)
        self.close()
        return self.n_frames

    # -- identity ------------------------------------------------------
    def content_hash(self) -> str:
        """SHA-256 (hex) of the clip's bytes; the cache key of its samples.

        For a video, of the file's bytes; for a folder, of each image's name,
        length and bytes, in clip order (so renaming, reordering, adding or
        editing a frame changes it).  Computed once per :class:`Clip`.
        """
        if self._hash is not None:
            return self._hash
        h = hashlib.sha256()
        files = self.files if self.kind == "folder" else [self.path]
        for f in files:
            try:
                size = f.stat().st_size
                if self.kind == "folder":
                    h.update(f.name.encode("utf-8", "surrogateescape") + b"\0")
                    h.update(str(size).encode() + b"\0")
                with open_regular(f) as fh:
                    while chunk := fh.read(_CHUNK):
                        h.update(chunk)
            except MediaError:
                raise
            except OSError as exc:
                raise MediaError(f"cannot read {str(f)!r} to hash it: {exc}") from exc
        self._hash = h.hexdigest()
        return self._hash

    def frame_path(self, index: int) -> Path:
        """The image file at position ``index`` (folders only)."""
        index = self._check_index(index)
        if self.kind != "folder":
            raise ParameterError(f"{str(self.path)!r} is a video file, not an image folder")
        return self.files[index]

    def position(self, number: int) -> int:
        """Position of the frame whose dataset frame number is ``number``.

        Raises
        ------
        ParameterError
            If no frame of the clip carries that number.
        """
        pos = int(np.searchsorted(self.frame_numbers, number))
        if pos < self.n_frames and int(self.frame_numbers[pos]) == int(number):
            return pos
        raise ParameterError(f"no frame numbered {number} in {str(self.path)!r} (its frames "
                             f"run from {int(self.frame_numbers[0])} to "
                             f"{int(self.frame_numbers[-1])})")


def _folder_numbers(folder: Path, files: list[Path]) -> np.ndarray:
    numbers = [frame_number(f.name) for f in files]
    if any(n is None for n in numbers):
        missing = next(f.name for f, n in zip(files, numbers, strict=True) if n is None)
        logger.warning("image folder %s: %r carries no frame number; frames are numbered "
                       "by position 0..%d instead", folder, missing, len(files) - 1)
        return np.arange(len(files), dtype=np.int64)
    arr = np.asarray(numbers, dtype=np.int64)
    if len(arr) > 1 and np.any(np.diff(arr) <= 0):
        bad = int(np.flatnonzero(np.diff(arr) <= 0)[0])
        raise MediaError(f"image folder {str(folder)!r}: frame numbers are not strictly "
                         f"increasing in natural order ({files[bad].name!r} then "
                         f"{files[bad + 1].name!r}); duplicate or mixed naming")
    return arr


def open_clip(path: str | os.PathLike[str], *, fps: float | None = None) -> Clip:
    """Open a video file or an image-sequence folder for lazy reading.

    Parameters
    ----------
    path : str or path-like
        A video file or a folder of images.
    fps : float, optional
        Frame rate.  For a video, used only when the container has none (the
        container's rate wins; a disagreement above 1 % is logged).  For a
        folder, required: folders carry no rate.

    Returns
    -------
    Clip

    Raises
    ------
    MediaError
        Missing path, folder without images, video that cannot be opened or
        yields no frame, no frame rate available.
    ParameterError
        ``fps`` given but not positive.

    Examples
    --------
    >>> clip = open_clip("CASME2/sub01/EP02_01f", fps=200)   # doctest: +SKIP
    >>> clip.frame_numbers[:3]                              # doctest: +SKIP
    array([46, 47, 48])
    >>> clip.read_range(0, 10, grey=True).shape             # doctest: +SKIP
    (10, 480, 640)
    """
    if fps is not None:
        check_range("fps", float(fps), 0.0, low_open=True)
    p = Path(path)
    if p.is_dir():
        files = list_images(p)
        if not files:
            raise MediaError(f"image folder {str(p)!r} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        if fps is None:
            raise MediaError(f"image folder {str(p)!r} has no frame rate: pass fps")
        numbers = _folder_numbers(p, files)
        return Clip(p, "folder", len(files), float(fps), numbers, files)
    if not p.exists():
        raise MediaError(f"no such video file or image folder: {str(p)!r}")
    if not p.is_file():
        raise MediaError(f"{str(p)!r} is neither a video file nor an image folder")
    if p.stat().st_size == 0:
        raise MediaError(f"video file {str(p)!r} is empty")
    import cv2  # start-up: OpenCV, only when frames are decoded

    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise MediaError(f"cannot open video {str(p)!r}: not a video OpenCV can read, "
                             "or truncated/corrupt")
        count = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise MediaError(f"video {str(p)!r} opens but yields no frame (empty, "
                             "truncated or corrupt)")
        claimed = count
        if count <= 0 or count > max(1, p.stat().st_size // _MIN_BYTES_PER_FRAME):
            # No count in the container, or one the file is too small to hold:
            # count by decoding forward (bounded by what the file holds).
            count = 1
            while cap.grab():
                count += 1
            if claimed > 0:
                logger.warning("video %s: the container claims %d frames but holds %d; "
                               "using %d", p, claimed, count, count)
    finally:
        cap.release()
    if not (np.isfinite(rate) and rate > 0):
        if fps is None:
            raise MediaError(f"video {str(p)!r} has no frame rate in its container: pass fps")
        rate = float(fps)
    elif fps is not None and abs(rate - float(fps)) > 0.01 * float(fps):
        logger.warning("video %s: container says %.3f fps, the dataset %.3f fps; using the "
                       "container's", p, rate, float(fps))
    clip = Clip(p, "video", count, rate, np.arange(count, dtype=np.int64), [])
    clip._frame_shape = (int(frame.shape[0]), int(frame.shape[1]))
    return clip
