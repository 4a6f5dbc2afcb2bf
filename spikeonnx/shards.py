"""Datasets stored as ``.npy`` shards: listing, checking and streaming them.

A *shard* is one ``.npy`` file whose first axis holds rows (samples); a dataset is
an ordered list of shards given as a folder, a glob pattern or a list of paths.
:func:`run_shards` runs a model over every shard with bounded memory: each shard is
memory-mapped and fed to the model one batch of rows at a time, and its outputs
are written to ``<output folder>/<shard stem>.npz`` (one array per model output)
as soon as the shard is done, atomically (:func:`spikeonnx.fileio.atomic_write`).
Resident memory is one batch of inputs plus one shard of outputs.

Every shard's header (shape and dtype) is checked against the model input before
anything runs, and again when the shard is opened, so a bad shard fails with an
error naming its file; outputs already written stay complete and valid.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .fileio import atomic_write

__all__ = [
    "Shard",
    "InputSpec",
    "is_shard_spec",
    "expand_shards",
    "read_header",
    "plan_shards",
    "open_shard",
    "iter_batches",
    "prepare_output_dir",
    "output_path",
    "ShardOutputs",
    "Shards",
    "run_shards",
]

PathLike = Union[str, "os.PathLike[str]"]
ShardSpec = Union[PathLike, Sequence[PathLike]]

_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class InputSpec:
    """What a shard must look like: the model input it feeds.

    Attributes
    ----------
    name : str
        The model input's name.
    shape : tuple
        Its shape; ``None`` (or a string) for a dynamic axis. Axis 0 is the row axis.
    dtype : numpy.dtype or None
        Its element type (None: any numeric type).
    """

    name: str
    shape: Tuple[Any, ...]
    dtype: Optional[np.dtype]

    @classmethod
    def from_session(cls, session: Any) -> "InputSpec":
        """The single input of an :class:`~spikeonnx.runtime.InferenceSession`.

        Raises
        ------
        ValueError
            If the model has more than one input (a ``.npy`` shard feeds one).
        """
        from .runtime import _element_dtype

        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"shards feed a model with one input; this model has inputs {[i.name for i in inputs]}"
            )
        arg = inputs[0]
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape) if arg.shape is not None else ()
        return cls(arg.name, shape, _element_dtype(arg.type))

    @classmethod
    def from_graph(cls, graph: Any) -> "InputSpec":
        """The single data input of an :class:`~spikeonnx.analysis.AnalysisGraph`
        (state inputs start from their initial values), whose batch axis must be 0.

        Raises
        ------
        ValueError
            If the model has several data inputs, or a batch axis other than 0.
        """
        names = [n for n in graph.input_names if n not in graph.state_inputs]
        if len(names) != 1:
            raise ValueError(f"shards feed a model with one data input; this model has inputs {names}")
        name = names[0]
        if graph.batch_axes.get(name) != 0:
            raise ValueError(
                f"shards hold rows on axis 0, but the batch axis of input {name!r} is "
                f"{graph.batch_axes.get(name)}"
            )
        info = graph.tensors.get(name)
        shape = tuple(d if isinstance(d, int) else None for d in (info.shape or ())) if info is not None else ()
        return cls(name, shape, None)  # the analyzer casts data to the input's type

    def describe(self) -> str:
        """The shape as text, ``?`` for dynamic axes."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"({dims}{',' if len(self.shape) == 1 else ''})"


@dataclass(frozen=True)
class Shard:
    """One ``.npy`` shard: its path and header."""

    path: Path
    shape: Tuple[int, ...]
    dtype: np.dtype

    @property
    def rows(self) -> int:
        """Number of rows (length of axis 0)."""
        return int(self.shape[0])


def is_shard_spec(spec: Any) -> bool:
    """Whether ``spec`` names shards (a folder, a glob pattern or a list) rather than one file."""
    if isinstance(spec, (list, tuple)):
        return True
    text = os.fspath(spec)
    if os.path.isfile(text):
        return False
    return os.path.isdir(text) or any(c in text for c in _GLOB_CHARS)


def _natural_key(path: Path) -> List[Any]:
    """Sort key putting ``shard_2`` before ``shard_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def expand_shards(spec: ShardSpec) -> List[Path]:
    """The ordered list of shard files ``spec`` names.

    Parameters
    ----------
    spec : path, glob pattern, or sequence of paths
        A folder (its ``*.npy`` files), a glob pattern (``**`` recurses), one
        ``.npy`` file, or a list of files (kept in the given order). Folders and
        patterns are sorted by name, numbers compared as numbers
        (``part2`` before ``part10``).

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    FileNotFoundError
        If nothing matches, a listed file does not exist, or the folder has no ``.npy``.
    ValueError
        If a pattern matches a file that is not ``.npy``, or a file is listed twice.
    """
    if isinstance(spec, (list, tuple)):
        paths = [Path(os.fspath(p)) for p in spec]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"shard file not found: {path}")
        if not paths:
            raise FileNotFoundError("no shard files given")
    else:
        text = os.fspath(spec)
        if os.path.isfile(text):
            paths = [Path(text)]
        elif os.path.isdir(text):
            paths = sorted((p for p in Path(text).glob("*.npy") if p.is_file()), key=_natural_key)
            if not paths:
                raise FileNotFoundError(f"folder {text} has no .npy shards")
        elif any(c in text for c in _GLOB_CHARS):
            paths = sorted((Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p)),
                           key=_natural_key)
            if not paths:
                raise FileNotFoundError(f"no shard files match {text!r}")
        else:
            raise FileNotFoundError(f"input file or folder not found: {text}")
    for path in paths:
        if path.suffix.lower() != ".npy":
            raise ValueError(f"shard {path} is not a .npy file (shards are .npy arrays, rows on axis 0)")
    seen = set()
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise ValueError(f"shard {path} is listed twice")
        seen.add(key)
    return paths


def read_header(path: PathLike) -> Tuple[Tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, from its header only.

    Raises
    ------
    ValueError
        If the file is not a readable ``.npy`` array (the message names it).
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"shard {path}: not a readable .npy file ({' '.join(str(err).split())})") from None
    if dtype.hasobject:
        raise ValueError(f"shard {path}: holds Python objects ({dtype}); shards must be numeric arrays")
    return tuple(int(d) for d in shape), np.dtype(dtype)


def check_shard(path: PathLike, shape: Tuple[int, ...], dtype: np.dtype, spec: InputSpec) -> None:
    """Check a shard's header against the model input it feeds.

    Raises
    ------
    ValueError
        Naming the shard, for a wrong rank, size or dtype, or no rows.
    """
    where = f"shard {path}"
    if dtype.kind not in "biuf":
        raise ValueError(f"{where}: dtype {dtype} is not numeric")
    if spec.dtype is not None and dtype != spec.dtype:
        raise ValueError(
            f"{where}: dtype {dtype}, but model input {spec.name!r} takes {spec.dtype} "
            f"(convert the shard with .astype(np.{spec.dtype.name}))"
        )
    if len(shape) == 0:
        raise ValueError(f"{where}: is a scalar; shards need rows on axis 0")
    if spec.shape:
        if len(shape) != len(spec.shape):
            raise ValueError(
                f"{where}: shape {shape}, but model input {spec.name!r} has rank {len(spec.shape)} "
                f"(shape {spec.describe()})"
            )
        for axis in range(1, len(shape)):
            want = spec.shape[axis]
            if want is not None and want != shape[axis]:
                raise ValueError(
                    f"{where}: shape {shape}, but model input {spec.name!r} has shape {spec.describe()} "
                    f"(axis {axis}: {shape[axis]} != {want})"
                )
        rows_per_call = spec.shape[0]
        if rows_per_call is not None and shape[0] % rows_per_call:
            raise ValueError(
                f"{where}: {shape[0]} rows, but model input {spec.name!r} takes exactly {rows_per_call} "
                "rows per call; the shard's rows must be a multiple of it"
            )
    if shape[0] == 0:
        raise ValueError(f"{where}: has no rows (shape {shape})")


def plan_shards(spec: ShardSpec, input_spec: InputSpec) -> List[Shard]:
    """List the shards of ``spec`` and check every header against ``input_spec``.

    Nothing is read but the headers, so a bad shard is reported before any work.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`expand_shards`, :func:`read_header` and :func:`check_shard`.
    """
    shards = []
    for path in expand_shards(spec):
        shape, dtype = read_header(path)
        check_shard(path, shape, dtype, input_spec)
        shards.append(Shard(path, shape, dtype))
    return shards


def open_shard(shard: Shard) -> np.ndarray:
    """Memory-map a shard, checking it still has the header it was planned with.

    Raises
    ------
    ValueError
        Naming the shard, if it cannot be mapped (e.g. truncated) or has changed.
    """
    try:
        array = np.load(shard.path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"shard {shard.path}: cannot read it ({' '.join(str(err).split())})") from None
    if array.shape != shard.shape or array.dtype != shard.dtype:
        raise ValueError(
            f"shard {shard.path}: changed while running (now {array.shape} {array.dtype}, "
            f"was {shard.shape} {shard.dtype})"
        )
    return array


def iter_batches(array: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive row batches of ``array`` as contiguous in-memory arrays."""
    for start in range(0, len(array), batch_size):
        yield np.ascontiguousarray(array[start:start + batch_size])


def prepare_output_dir(folder: PathLike, *, overwrite: bool = False) -> Path:
    """Create the output folder, refusing a non-empty one unless ``overwrite``.

    With ``overwrite=True`` files named like the new outputs are replaced; other
    files in the folder are left alone.

    Raises
    ------
    ValueError
        If ``folder`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    out = Path(os.fspath(folder))
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; shard outputs go to a folder (one .npz per shard)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output folder {out} is not empty; pass --overwrite (overwrite=True) to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    return out


def output_path(folder: PathLike, shard: Union[Shard, PathLike]) -> Path:
    """Where the outputs of ``shard`` go: ``folder/<shard stem>.npz``."""
    path = shard.path if isinstance(shard, Shard) else Path(os.fspath(shard))
    return Path(os.fspath(folder)) / f"{path.stem}.npz"


def _check_unique_outputs(shards: Sequence[Shard], folder: PathLike) -> None:
    names: Dict[Path, Path] = {}
    for shard in shards:
        target = output_path(folder, shard)
        if target in names:
            raise ValueError(
                f"shards {names[target]} and {shard.path} would both write {target}; shard file names must differ"
            )
        names[target] = shard.path
    for shard in shards:
        if os.path.realpath(output_path(folder, shard)) == os.path.realpath(shard.path):
            raise ValueError(f"the output of shard {shard.path} would overwrite the shard itself")


class ShardOutputs:
    """The outputs of one shard, filled batch by batch in row order, then written.

    Parameters
    ----------
    shard : Shard
        The shard whose outputs these are.
    folder : path
        The output folder.

    Raises
    ------
    ValueError
        From :meth:`add` if an output does not have one row per input row, or more
        rows arrive than the shard has (a batch delivered twice).
    """

    def __init__(self, shard: Shard, folder: PathLike) -> None:
        self.shard = shard
        self.path = output_path(folder, shard)
        self.filled = 0
        self._arrays: Optional[Dict[str, np.ndarray]] = None

    @property
    def complete(self) -> bool:
        """Whether every row of the shard has its outputs."""
        return self.filled == self.shard.rows

    def add(self, outputs: Dict[str, np.ndarray], rows: int) -> None:
        """Append the outputs of the next ``rows`` rows."""
        if self.filled + rows > self.shard.rows:
            raise ValueError(
                f"shard {self.shard.path}: got outputs for {self.filled + rows} rows but it has "
                f"{self.shard.rows} (rows delivered twice)"
            )
        if self._arrays is None:
            self._arrays = {}
            for name, value in outputs.items():
                value = np.asarray(value)
                self._arrays[name] = np.empty((self.shard.rows, *value.shape[1:]), value.dtype)
        for name, value in outputs.items():
            value = np.asarray(value)
            target = self._arrays.get(name)
            if target is None or value.ndim == 0 or value.shape[0] != rows or value.shape[1:] != target.shape[1:]:
                raise ValueError(
                    f"shard {self.shard.path}: output {name!r} has shape {value.shape} for a batch of {rows} "
                    "rows; running shards needs outputs with one row per input row on axis 0"
                )
            target[self.filled:self.filled + rows] = value
        self.filled += rows

    def write(self) -> Path:
        """Write ``folder/<stem>.npz`` atomically; the shard must be complete."""
        if not self.complete or self._arrays is None:
            raise ValueError(f"shard {self.shard.path}: only {self.filled} of {self.shard.rows} rows have outputs")
        with atomic_write(self.path) as handle:
            np.savez(handle, **self._arrays)
        self._arrays = None  # free the shard's outputs
        return self.path


def _progress(total: int, enabled: Optional[bool]) -> Any:
    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal
    return tqdm(total=total, unit="row", disable=None if enabled is None else not enabled,
                dynamic_ncols=True)


class Shards:
    """A dataset of ``.npy`` shards as example data of :class:`~spikeonnx.analysis.GraphEnergy`.

    The rates are accumulated exactly over every row of every shard, streaming
    (one memory-mapped shard and one batch at a time), so they equal the rates of
    one call on the concatenated data (see :mod:`spikeonnx.analysis.rates`).

    Parameters
    ----------
    spec : folder, glob pattern or list of ``.npy`` paths
        The dataset (see :func:`expand_shards`).
    batch_size : int
        Rows per model call.
    progress : bool or None
        Progress bar over rows; None shows it only when stderr is a terminal.

    Examples
    --------
    >>> GraphEnergy("model.onnx", Shards("shards/*.npy")).summary()   # doctest: +SKIP
    """

    def __init__(self, spec: ShardSpec, *, batch_size: int = 256, progress: Optional[bool] = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.spec = spec
        self.batch_size = int(batch_size)
        self.progress = progress

    def rate_sums(self, graph: Any) -> Any:
        """Stream every shard through ``graph``'s model; returns the
        :class:`~spikeonnx.analysis.rates.RateSums`.

        Raises
        ------
        ValueError
            For a bad shard (naming its file) or a model whose input does not fit shards.
        """
        from .analysis.rates import RateAccumulator

        spec = InputSpec.from_graph(graph)
        batch_size = spec.shape[0] if spec.shape and spec.shape[0] is not None else self.batch_size
        planned = plan_shards(self.spec, spec)
        accumulator = RateAccumulator(graph)
        with _progress(sum(s.rows for s in planned), self.progress) as bar:
            for shard in planned:
                for batch in iter_batches(open_shard(shard), batch_size):
                    try:
                        accumulator.add({spec.name: batch})
                    except ValueError as err:
                        raise ValueError(f"shard {shard.path}: {err}") from None
                    bar.update(len(batch))
        return accumulator.sums

    def __repr__(self) -> str:
        return f"Shards({self.spec!r}, batch_size={self.batch_size})"


def run_shards(
    model: Any,
    shards: ShardSpec,
    output_dir: PathLike,
    *,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: Optional[bool] = None,
) -> List[Path]:
    """Run a model over every shard, writing one ``.npz`` of outputs per shard.

    Parameters
    ----------
    model : path, bytes, onnx.ModelProto or InferenceSession
        A single-input model (or a session of one).
    shards : folder, glob pattern or list of ``.npy`` paths
        The dataset (see :func:`expand_shards`).
    output_dir : path
        Folder for ``<shard stem>.npz``, created if needed.
    batch_size : int
        Rows per model call (forced to the model's batch size if it is fixed).
    overwrite : bool
        Allow a non-empty ``output_dir`` (files named like the outputs are replaced).
    progress : bool or None
        Show a progress bar over rows; None shows it only when stderr is a terminal.

    Returns
    -------
    list of pathlib.Path
        The output files, in shard order.

    Raises
    ------
    ValueError
        For a bad shard (naming its file; earlier outputs are complete), an
        unsuitable model, or a non-empty output folder without ``overwrite``.
    """
    from .runtime import InferenceSession

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    session = model if isinstance(model, InferenceSession) else InferenceSession(model)
    spec = InputSpec.from_session(session)
    if spec.shape and spec.shape[0] is not None:
        batch_size = spec.shape[0]
    planned = plan_shards(shards, spec)
    _check_unique_outputs(planned, output_dir)
    folder = prepare_output_dir(output_dir, overwrite=overwrite)
    names = [o.name for o in session.get_outputs()]
    written = []
    with _progress(sum(s.rows for s in planned), progress) as bar:
        for shard in planned:
            array = open_shard(shard)
            outputs = ShardOutputs(shard, folder)
            for batch in iter_batches(array, batch_size):
                try:
                    values = session.run(None, {spec.name: batch})
                except Exception as err:
                    raise ValueError(f"shard {shard.path}: running the model failed: {err}") from None
                outputs.add(dict(zip(names, values, strict=True)), len(batch))
                bar.update(len(batch))
            del array  # unmap before the next shard
            written.append(outputs.write())
    return written
