"""The dataset-adapter registry: one entry per dataset, filled where its loader is defined.

An adapter module registers its loader with :func:`register_dataset`::

    @register_dataset("casme2", title="CASME II", fps=200.0, long=False,
                      columns=CASME2_COLUMNS.required(), forbidden=("inducementcode",),
                      sheet="Subject, Filename, OnsetFrame, ...", layout="root/sub01/EP02_01f/")
    def load_casme2(request: LoadRequest) -> list[Sample]:
        ...

Everything that lists datasets reads the registry: :func:`dataset_names`,
detection (:mod:`mexkit.io.datasets.detect`), the CLI's ``--dataset``
choices and the README's dataset table (:func:`markdown_table`, checked by a
test).  Adding a dataset is one new module in this package; it is imported
when the package is (see ``__init__``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DatasetError

if TYPE_CHECKING:
    from ..sheets import Row
    from .sample import Sample

__all__ = ["LoadRequest", "DatasetAdapter", "Importer", "register_dataset", "get_adapter",
           "adapters", "dataset_names", "markdown_table"]


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked to read.

    Attributes
    ----------
    name : str
        The registered name the loader was picked by.
    path : Path
        The annotation sheet.
    root : Path
        Folder holding the clips (the sheet's folder by default).
    fps : float or None
        The frame rate: the user's override, else the adapter's published one.
    sheets : mapping or None
        Other sheets the adapter may use (``megc2019``: its parts' sheets).
    """

    name: str
    path: Path
    root: Path
    fps: float | None
    sheets: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Importer:
    """How ``mexkit import`` reads a release that arrives already preprocessed.

    Attributes
    ----------
    variants : mapping
        Variant name -> what its store holds (the first is the default).
    entries : callable
        ``entries(root, sheet_or_None) -> [(Sample, files)]``: the release's
        samples and, per sample, the files (``{role: path}``) it is read from.
    read : callable
        ``read(files, variant, sample_id) -> (arrays, attrs, face)``: one
        sample's arrays and attributes (e.g. the units of its maps);
        ``face`` is ``None`` or ``(image, scale)``, an RGB uint8 image in
        which the pipeline finds the 68 landmarks and the factor that takes
        them to the stored arrays' pixels.
    """

    variants: Mapping[str, str]
    entries: Callable[[Path, Path | None], list[tuple[Sample, dict[str, str]]]]
    read: Callable[[Mapping[str, str], str, str], tuple[dict[str, Any], dict[str, Any], Any]]


@dataclass(frozen=True)
class DatasetAdapter:
    """One dataset as mexkit reads it.

    Attributes
    ----------
    name : str
        What ``--dataset`` takes.
    title : str
        The dataset's own name (README table).
    fps : float or None
        Published frame rate (``None``: per row or per part).
    long : bool
        Long videos with several annotated intervals each (spotting), rather
        than one clip per sample.
    loader : callable
        ``loader(LoadRequest) -> list[Sample]``.
    columns : tuple of tuple of str
        Detection signature: normalised header columns (groups of
        alternatives) that a sheet of this dataset has.
    forbidden : tuple of str
        Columns whose presence rules this dataset out.
    detect : callable or None
        ``detect(book, path) -> bool`` for sheets a header cannot identify
        (no header row, several sheets); tried before the columns.
    sheet, layout : str
        The annotation file and the frame layout, for the README table.
    reference : str
        The paper that published the dataset.
    extra_sheets : tuple of str
        Keys of other sheets the loader takes (``LoadRequest.sheets``).
    takes_fps : bool
        Whether the user may override the frame rate (not where the sheet or
        the parts fix it).
    default_sheet : str
        The sheet's file name under ``--root``, for releases that ship it in
        a fixed place (``mexkit samples --root REPO`` then finds it).
    importer : Importer or None
        For data that arrive preprocessed: ``mexkit import`` reads them.
    module : str
        Where the adapter is defined.
    """

    name: str
    title: str
    fps: float | None
    long: bool
    loader: Callable[[LoadRequest], list[Sample]]
    columns: tuple[tuple[str, ...], ...] = ()
    forbidden: tuple[str, ...] = ()
    detect: Callable[[Mapping[str, list[Row]], Path], bool] | None = None
    sheet: str = ""
    layout: str = ""
    reference: str = ""
    extra_sheets: tuple[str, ...] = ()
    takes_fps: bool = True
    default_sheet: str = ""
    importer: Importer | None = None
    module: str = field(default="", compare=False)


_REGISTRY: dict[str, DatasetAdapter] = {}


def register_dataset(name: str, *, title: str, fps: float | None, long: bool,
                     columns: Sequence[Sequence[str] | str] = (),
                     forbidden: Sequence[str] = (),
                     detect: Callable[[Mapping[str, list[Row]], Path], bool] | None = None,
                     sheet: str = "", layout: str = "", reference: str = "",
                     extra_sheets: Sequence[str] = (), takes_fps: bool = True,
                     default_sheet: str = "", importer: Importer | None = None
                     ) -> Callable[[Callable[[LoadRequest], list[Sample]]],
                                   Callable[[LoadRequest], list[Sample]]]:
    """Decorator: register ``loader`` under ``name`` (see :class:`DatasetAdapter`).

    Raises
    ------
    DatasetError
        ``name`` is already registered by another module.
    """
    groups = tuple((c,) if isinstance(c, str) else tuple(c) for c in columns)

    def decorate(loader: Callable[[LoadRequest], list[Sample]]
                 ) -> Callable[[LoadRequest], list[Sample]]:
        module = getattr(loader, "__module__", "")
        old = _REGISTRY.get(name)
        if old is not None and old.module != module:
            raise DatasetError(f"dataset {name!r} is registered twice: by {old.module} and "
                               f"by {module}")
        _REGISTRY[name] = DatasetAdapter(
            name=name, title=title, fps=fps, long=long, loader=loader, columns=groups,
            forbidden=tuple(forbidden), detect=detect, sheet=sheet, layout=layout,
            reference=reference, extra_sheets=tuple(extra_sheets),
            takes_fps=takes_fps, default_sheet=default_sheet, importer=importer,
            module=module)
        return loader

    return decorate


def adapters() -> list[DatasetAdapter]:
    """Every registered adapter, in registration order."""
    return list(_REGISTRY.values())


def dataset_names() -> list[str]:
    """The names :func:`~mexkit.io.datasets.load_dataset` accepts."""
    return list(_REGISTRY)


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter called ``name``.

    Raises
    ------
    DatasetError
        Unknown name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(f"Invalid value for the 'dataset' parameter. Allowed values are "
                           f"{', '.join(_REGISTRY)}, but got {name!r} instead.") from None


def markdown_table() -> str:
    """The README's dataset table, generated from the registry."""
    lines = ["| `--dataset` | dataset | kind | fps | annotation file | frames under `--root` |",
             "|---|---|---|---|---|---|"]
    for a in adapters():
        fps = "varies" if a.fps is None else f"{a.fps:g}"
        kind = "long videos" if a.long else "clips"
        lines.append(f"| `{a.name}` | {a.title} | {kind} | {fps} | {a.sheet} | {a.layout} |")
    return "\n".join(lines)
