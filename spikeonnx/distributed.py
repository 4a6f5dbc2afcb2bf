"""Batch inference and energy analysis on a Ray cluster, with Ray Data.

Needs the ``ray`` extra (``pip install "spikeonnx[ray]"``); importing this module
imports Ray, nothing else in spikeonnx does. Every node of the cluster needs
spikeonnx installed (its op library is found on each worker from the installed
package) and must see the shard files at the same paths (a shared file system).

- :class:`Predictor`: a callable class holding one
  :class:`~spikeonnx.runtime.InferenceSession` per Ray actor, for your own
  pipelines: ``ds.map_batches(Predictor, fn_constructor_args=(path,), concurrency=n,
  batch_size=b)``.
- :func:`run_shards`: ``spikeonnx run --ray``: a Ray dataset of work items (shard,
  row range) mapped by :class:`ShardRangePredictor` actors, which memory-map the
  shards themselves, so only the model outputs travel through Ray's object store;
  one ``.npz`` per shard written by the driver in shard and row order (as
  :func:`spikeonnx.shards.run_shards` does locally).
- :func:`rate_sums` / :class:`DatasetRates`: layer input rates (and so
  :class:`~spikeonnx.analysis.GraphEnergy`) over a ``ray.data.Dataset``, reduced
  exactly: the result equals one local call on all the data.

Actors are restarted by Ray when their process dies and their unfinished batches
are retried (Ray Data's actor pools use ``max_restarts=-1`` and
``max_task_retries=-1``; ``tests/test_distributed.py`` kills one); in :func:`run_shards`
the driver checks the shard and row index of every output row, so a lost, repeated
or reordered row is an error, never a silently wrong file.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import ray
import ray.data

from .shards import (
    InputSpec,
    Shard,
    ShardOutputs,
    ShardSpec,
    _check_unique_outputs,
    _progress,
    open_shard,
    plan_shards,
    prepare_output_dir,
)

__all__ = ["Predictor", "ShardRangePredictor", "RateMapper", "connect", "run_shards", "rate_sums", "DatasetRates",
           "DATA_COLUMN", "PATH_COLUMN", "SHARD_COLUMN", "START_COLUMN", "STOP_COLUMN", "ROW_COLUMN"]

#: The column ``ray.data.read_numpy`` puts the arrays in.
DATA_COLUMN = "data"
#: The column ``read_numpy(include_paths=True)`` puts each row's file in.
PATH_COLUMN = "path"
#: Work items of :class:`ShardRangePredictor`: shard index, first row, end row (exclusive);
#: its outputs carry the shard index and the row index of every output row.
SHARD_COLUMN = "spikeonnx_shard"
START_COLUMN = "spikeonnx_start"
STOP_COLUMN = "spikeonnx_stop"
ROW_COLUMN = "spikeonnx_row"
#: Model time a task of :func:`run_shards` aims at when ``task_rows`` is not given: Ray's cost
#: per task (about 20 ms of CPU between an actor and the driver) is then a few percent of it.
TASK_SECONDS = 0.5
#: Rows per task when the model's time cannot be measured on the driver (every shard empty,
#: or a fixed batch size larger than the first non-empty shard).
TASK_ROWS = 4096


def connect(address: Optional[str] = None, *, num_cpus: Optional[int] = None) -> None:
    """Connect to a Ray cluster, unless this process already is.

    Parameters
    ----------
    address : str, optional
        ``"auto"`` (the cluster this machine belongs to, started with ``ray start``),
        ``"ray://host:10001"`` (Ray Client), ``"host:6379"``; None or ``"local"``
        starts a cluster on this machine for the lifetime of the process.
    num_cpus : int, optional
        CPUs of a local cluster (default: all).
    """
    if ray.is_initialized():
        return
    kwargs: Dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address in (None, "local"):
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    else:
        ray.init(address=address, **kwargs)


def _input_column(batch: Dict[str, np.ndarray], name: str, column: Optional[str]) -> str:
    if column is not None:
        if column not in batch:
            raise ValueError(f"the batch has no column {column!r}; its columns are {sorted(batch)}")
        return column
    for candidate in (name, DATA_COLUMN):
        if candidate in batch:
            return candidate
    data = [c for c in batch if c != PATH_COLUMN]
    if len(data) == 1:
        return data[0]
    raise ValueError(
        f"cannot tell which column feeds model input {name!r}: the batch has columns {sorted(batch)}; "
        "pass input_column"
    )


class Predictor:
    """Run a single-input ONNX model on Ray Data batches; one session per actor.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        The model. A path must exist on every node; bytes travel with the actor.
    input_column : str, optional
        The column feeding the model input; by default the column named like the
        input, else ``"data"`` (``read_numpy``'s), else the only column.
    threads : int
        onnxruntime intra-op threads per actor (default 1: one actor per CPU).
    library : bool
        Register the spikeonnx op library (default); False runs the spiking ops'
        model-local function bodies on stock onnxruntime.

    Notes
    -----
    A batch (``batch_format="numpy"``) maps to the same batch with one column per
    model output added (named like the output) and the input column dropped;
    other columns (e.g. ``path``) pass through. The op library is resolved on
    the worker from its installed spikeonnx.

    Each actor asks for one CPU unless ``map_batches`` gets ``num_cpus``: leave
    the read tasks some (e.g. ``num_cpus=0.5`` for as many actors as the cluster
    has CPUs), or Ray Data waits for a free CPU forever.

    Examples
    --------
    >>> ds = ray.data.read_numpy("shards/")                          # doctest: +SKIP
    >>> out = ds.map_batches(Predictor, fn_constructor_args=("model.onnx",),
    ...                      concurrency=2, batch_size=256)          # doctest: +SKIP
    """

    def __init__(
        self, model: Any, *, input_column: Optional[str] = None, threads: int = 1, library: bool = True
    ) -> None:
        import onnxruntime as ort

        from .runtime import InferenceSession

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        # the pool's threads spin while a run lasts, but stop as soon as it returns: spinning on
        # between runs takes the cores from the actor's own Ray work, the driver and the raylet
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = InferenceSession(model, sess_options=options, library=library)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"Predictor runs models with one input; this one has {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_column = input_column

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Outputs of one batch (see the class notes)."""
        column = _input_column(batch, self.input_name, self.input_column)
        values = self.session.run(None, {self.input_name: np.ascontiguousarray(batch[column])})
        out = {k: v for k, v in batch.items() if k != column}
        clash = [n for n in self.output_names if n in out]
        if clash:
            raise ValueError(f"model output(s) {clash} have the names of columns of the batch {sorted(batch)}")
        out.update(zip(self.output_names, values, strict=True))
        return out


class ShardRangePredictor(Predictor):
    """Ray Data actor for :func:`run_shards`: work items (shard, row range) -> the
    model outputs of those rows; the actor memory-maps the shard itself.

    Only the small work items and the outputs go through Ray's object store, not
    the shards' rows (every node must see the shards at the same paths).

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        As for :class:`Predictor`.
    shards : sequence of Shard
        The planned shards (:func:`spikeonnx.shards.plan_shards`); a work item
        names one by its index. A shard whose header changed since is an error.
    batch_size : int
        Rows per model call.
    threads, library
        As for :class:`Predictor`.

    Notes
    -----
    A batch has the columns :data:`SHARD_COLUMN`, :data:`START_COLUMN` and
    :data:`STOP_COLUMN`; the result has one row per shard row with the columns
    :data:`SHARD_COLUMN`, :data:`ROW_COLUMN` and one per model output, so the
    driver can check that every row arrives exactly once, in order.
    """

    def __init__(
        self, model: Any, shards: Sequence[Shard], *, batch_size: int, threads: int = 1, library: bool = True
    ) -> None:
        super().__init__(model, threads=threads, library=library)
        self.shards = list(shards)
        self.batch_size = int(batch_size)
        self._mapped: Optional[Tuple[int, np.ndarray]] = None  # the last shard opened, for its next range

    def _open(self, index: int) -> np.ndarray:
        if self._mapped is None or self._mapped[0] != index:
            self._mapped = None  # unmap the previous shard first
            self._mapped = (index, open_shard(self.shards[index]))
        return self._mapped[1]

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Outputs of the work items of one batch (see the class notes)."""
        calls: List[Sequence[np.ndarray]] = []
        for index, start, stop in zip(batch[SHARD_COLUMN].tolist(), batch[START_COLUMN].tolist(),
                                      batch[STOP_COLUMN].tolist(), strict=True):
            shard = self.shards[index]
            array = self._open(index)
            for first in range(start, stop, self.batch_size):
                rows = np.ascontiguousarray(array[first:min(first + self.batch_size, stop)])
                try:
                    values = self.session.run(None, {self.input_name: rows})
                except Exception as err:
                    raise ValueError(f"shard {shard.path}: running the model failed: {err}") from None
                for name, value in zip(self.output_names, values, strict=True):
                    if value.ndim == 0 or value.shape[0] != len(rows):
                        raise ValueError(
                            f"shard {shard.path}: output {name!r} has shape {value.shape} for a batch of "
                            f"{len(rows)} rows; running shards needs outputs with one row per input row on axis 0"
                        )
                calls.append(values)
        starts, stops = batch[START_COLUMN].astype(np.int64), batch[STOP_COLUMN].astype(np.int64)
        out = {
            SHARD_COLUMN: np.repeat(batch[SHARD_COLUMN].astype(np.int64), stops - starts),
            ROW_COLUMN: np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)]),
        }
        for k, name in enumerate(self.output_names):
            out[name] = np.concatenate([values[k] for values in calls]) if len(calls) > 1 else calls[0][k]
        return out


def _work_items(shards: Sequence[Shard], rows: int, batch_size: int) -> List[Dict[str, List[int]]]:
    """Tasks of at most ``rows`` rows (a multiple of ``batch_size``), in shard and row order.

    A task is a list of row ranges (columns :data:`SHARD_COLUMN`, :data:`START_COLUMN`,
    :data:`STOP_COLUMN`); it ends a shard and goes on with the next, so that small shards
    share a task (Ray's cost per task is paid per task, not per shard). A range starts at a
    multiple of ``batch_size`` in its shard, so the model sees the batches a local run feeds it.
    """
    tasks: List[Dict[str, List[int]]] = []
    task: Dict[str, List[int]] = {SHARD_COLUMN: [], START_COLUMN: [], STOP_COLUMN: []}
    room = rows
    for i, shard in enumerate(shards):
        start = 0
        while start < shard.rows:
            take = min(shard.rows - start, room // batch_size * batch_size)
            if take == 0:  # the task is full
                tasks.append(task)
                task, room = {SHARD_COLUMN: [], START_COLUMN: [], STOP_COLUMN: []}, rows
                continue
            task[SHARD_COLUMN].append(i)
            task[START_COLUMN].append(start)
            task[STOP_COLUMN].append(start + take)
            start += take
            room -= take
    if task[SHARD_COLUMN]:
        tasks.append(task)
    return tasks


def _timed_task_rows(session: Any, input_name: str, shards: Sequence[Shard], batch_size: int, *, fixed: bool) -> int:
    """Rows that take about :data:`TASK_SECONDS` of the model's time (at least one batch),
    from the fastest of three runs (after a first one) of one batch (at most 64 rows unless
    the batch size is fixed) of the first non-empty shard; :data:`TASK_ROWS` if every shard
    is empty."""
    shard = next((s for s in shards if s.rows > 0), None)
    if shard is None:
        return TASK_ROWS
    rows = batch_size if fixed else min(batch_size, 64)
    array = open_shard(shard)
    if len(array) < rows:  # a fixed batch size larger than the shard: the model cannot run it here
        return TASK_ROWS
    feed = {input_name: np.ascontiguousarray(array[:rows])}
    del array
    best = float("inf")
    try:
        session.run(None, feed)  # the first run allocates
        for _ in range(3):
            start = time.perf_counter()
            session.run(None, feed)
            best = min(best, time.perf_counter() - start)
    except Exception as err:
        raise ValueError(f"shard {shard.path}: running the model failed: {err}") from None
    per_row = max(best, 1e-9) / rows
    return max(batch_size, int(TASK_SECONDS / per_row))


def _actor_cpus(concurrency: int) -> float:
    """Logical CPUs per actor: 1, or less when the pool would take every CPU of the
    cluster (Ray Data then has none left to schedule the reads on, and waits forever)."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    if concurrency <= total - 1:
        return 1.0
    return max(total - 1.0, 0.0) / concurrency or 0.0


def _actor_threads(concurrency: int) -> int:
    """onnxruntime threads per actor: the cluster's CPUs shared out over the actors (an
    actor alone on a machine uses every core, as a local run does)."""
    total = int(ray.cluster_resources().get("CPU", 1.0))
    # never more threads than one node has cores (an actor runs on one node)
    per_node = max((int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    return max(1, min(per_node, total // concurrency))


def _read(paths: Sequence[Path]) -> "ray.data.Dataset":
    dataset = ray.data.read_numpy([os.path.abspath(p) for p in paths], include_paths=True)
    dataset.context.enable_progress_bars = False  # this dataset's own context, not the user's
    return dataset


def run_shards(
    model: Union[str, "os.PathLike[str]"],
    shards: ShardSpec,
    output_dir: Union[str, "os.PathLike[str]"],
    *,
    address: Optional[str] = None,
    concurrency: int = 1,
    batch_size: int = 256,
    task_rows: Optional[int] = None,
    overwrite: bool = False,
    progress: Optional[bool] = None,
    library: bool = True,
    predictor: type = ShardRangePredictor,
) -> List[Path]:
    """Run a model over every shard on a Ray cluster; one ``.npz`` per shard.

    The dataset is one task per ``task_rows`` rows (``ray.data.from_arrow``, one block
    of row ranges per task; a task ends one shard and goes on with the next, so small
    shards share one), mapped by an actor pool of :class:`ShardRangePredictor`:
    each actor reads its rows from the memory-mapped shard, so the shards never go
    through Ray's object store (:class:`Predictor` over ``ray.data.read_numpy``
    is the way for datasets of your own).

    Parameters
    ----------
    model : path
        The ONNX model (read here and sent to the actors).
    shards : folder, glob pattern or list of ``.npy`` paths
        The dataset; every node must see the files at the same (absolute) paths.
    output_dir : path
        Folder for ``<shard stem>.npz`` (written by this process).
    address : str, optional
        Cluster to use (see :func:`connect`); ignored if Ray is already initialised.
    concurrency : int
        Number of actors, each with one session.
    batch_size : int
        Rows per model call (forced to the model's batch size if it is fixed).
    task_rows : int, optional
        Rows per task (rounded up to whole batches; at most the actors' even share
        of all rows, so that each gets work): an actor's unit of work, and of retry
        when it dies. Ray's cost per task is paid per task, whatever its rows, so by
        default a task holds about :data:`TASK_SECONDS` of the model's time, timed
        here on one batch of the first shard (at least one batch).
    overwrite : bool
        Allow a non-empty ``output_dir``.
    progress : bool or None
        Progress bar over rows; None shows it only when stderr is a terminal.
    library : bool
        As for :class:`Predictor`.
    predictor : type
        The actor class (a :class:`ShardRangePredictor` subclass; for tests and
        instrumentation).

    Returns
    -------
    list of pathlib.Path
        The output files, in shard order.

    Raises
    ------
    ValueError
        For a bad shard (naming it; the outputs of the shards before it are
        written), a model that does not fit, a non-empty output folder, or rows lost
        or repeated on the way.
    """
    from .runtime import InferenceSession

    checked = [("concurrency", concurrency), ("batch_size", batch_size)]
    if task_rows is not None:
        checked.append(("task_rows", task_rows))
    for name, value in checked:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    blob = Path(model).read_bytes() if not isinstance(model, bytes) else model
    local = InferenceSession(blob, library=library)  # the model is checked here, before any cluster work
    spec = InputSpec.from_session(local)
    fixed_batch = bool(spec.shape) and spec.shape[0] is not None
    if fixed_batch:
        batch_size = spec.shape[0]
    planned = plan_shards(shards, spec)
    _check_unique_outputs(planned, output_dir)
    if task_rows is None:  # timed before a local cluster starts beside this process
        task_rows = _timed_task_rows(local, spec.name, planned, batch_size, fixed=fixed_batch)
    folder = prepare_output_dir(output_dir, overwrite=overwrite)
    connect(address)
    outputs_of = [o.name for o in local.get_outputs()]
    del local
    # the actors open the shards by absolute path: the driver's working folder may not be theirs
    planned_abs = [Shard(Path(os.path.abspath(s.path)), s.shape, s.dtype) for s in planned]
    import pyarrow

    # at most a share of the rows per task, so that every actor gets work
    share = -(-sum(s.rows for s in planned) // concurrency)
    tasks = _work_items(planned_abs, -(-min(task_rows, share) // batch_size) * batch_size, batch_size)
    # one block per task, mapped as one batch: the tasks spread over the actors
    work = ray.data.from_arrow([pyarrow.table({k: pyarrow.array(v, pyarrow.int64()) for k, v in task.items()})
                                for task in tasks])
    work.context.execution_options.preserve_order = True  # outputs in shard and row order
    work.context.enable_progress_bars = False
    dataset = work.map_batches(
        predictor,
        fn_constructor_args=(blob, planned_abs),
        fn_constructor_kwargs={"batch_size": batch_size, "library": library, "threads": _actor_threads(concurrency)},
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=_actor_cpus(concurrency),
        batch_size=None,
        batch_format="numpy",
    )
    written: List[Path] = []
    current: Optional[ShardOutputs] = ShardOutputs(planned[0], folder)
    with _progress(sum(s.rows for s in planned), progress) as bar:
        try:
            for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
                index, rows = batch[SHARD_COLUMN], batch[ROW_COLUMN]
                # consecutive runs of rows from one shard
                starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
                for start, stop in zip(starts, np.r_[starts[1:], len(index)], strict=True):
                    shard = planned[int(index[start])] if 0 <= index[start] < len(planned) else None
                    if (current is None or int(index[start]) != len(written)
                            or not np.array_equal(rows[start:stop], np.arange(current.filled,
                                                                              current.filled + stop - start))):
                        where = shard.path if shard is not None else f"#{index[start]}"
                        raise ValueError(
                            f"rows {rows[start]}..{rows[stop - 1]} of shard {where} arrived while "
                            + (f"shard {current.shard.path} had {current.filled} of {current.shard.rows} rows"
                               if current is not None else "every shard was complete")
                            + " (rows lost, repeated or reordered)"
                        )
                    current.add({n: batch[n][start:stop] for n in outputs_of}, int(stop - start))
                    bar.update(int(stop - start))
                    if current.complete:  # write each shard as soon as it is done
                        written.append(current.write())
                        current = ShardOutputs(planned[len(written)], folder) if len(written) < len(planned) else None
        except ray.exceptions.RayError as err:
            raise ValueError(f"the Ray job failed: {_diagnose(planned[len(written):]) or _ray_message(err)}") from None
    if current is not None:
        raise ValueError(
            f"shard {current.shard.path} got {current.filled} of {current.shard.rows} rows, and the "
            f"{len(planned) - len(written) - 1} shard(s) after it none (rows lost)"
        )
    return written


def _ray_message(err: BaseException) -> str:
    """The first line of the error that failed a Ray task (without Ray's traceback)."""
    cause = getattr(err, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _diagnose(shards: Sequence[Any]) -> Optional[str]:
    """The error of the first of ``shards`` that cannot be read here: read tasks do not
    name their file when they fail, so the driver looks for the culprit itself."""
    for shard in shards:
        try:
            open_shard(shard)
        except ValueError as err:
            return str(err)
    return None


class RateMapper:
    """Ray Data actor: each batch -> one row holding its pickled partial
    :class:`~spikeonnx.analysis.rates.RateSums` (column ``sums``).

    Parameters
    ----------
    graph : AnalysisGraph
        The analysed model (pickled to the actor).
    input_column : str, optional
        As for :class:`Predictor`.
    """

    def __init__(self, graph: Any, *, input_column: Optional[str] = None) -> None:
        from .analysis.rates import RateAccumulator

        self.graph = graph
        self.names = [n for n in graph.input_names if n not in graph.state_inputs]
        if len(self.names) != 1:
            raise ValueError(f"rates over a dataset need a model with one data input; this one has {self.names}")
        self.input_column = input_column
        self._accumulator = RateAccumulator(graph)  # one session per actor

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        column = _input_column(batch, self.names[0], self.input_column)
        accumulator = self._accumulator
        accumulator.sums = type(accumulator.sums)()  # a fresh partial per batch
        accumulator.add({self.names[0]: np.asarray(batch[column])})
        return {"sums": np.array([pickle.dumps(accumulator.sums)], dtype=object)}


def rate_sums(
    dataset: "ray.data.Dataset",
    graph: Any,
    *,
    input_column: Optional[str] = None,
    concurrency: int = 1,
    batch_size: int = 256,
) -> Any:
    """Layer input sums of ``|x|`` and counts over every row of a Ray dataset.

    Parameters
    ----------
    dataset : ray.data.Dataset
        Rows feeding the model's one data input (e.g. ``ray.data.read_numpy``).
    graph : AnalysisGraph
        The analysed model (``GraphEnergy(...).graph``).
    input_column : str, optional
        As for :class:`Predictor`.
    concurrency, batch_size : int
        Actors, and rows per model call.

    Returns
    -------
    RateSums
        Exactly the sums of one local pass over the same rows (partials are exact
        and merged in any order), so ``GraphEnergy(model, sums)`` gives the rates of
        ``GraphEnergy(model, all_rows)``.
    """
    from .analysis.rates import RateSums

    partials = dataset.map_batches(
        RateMapper,
        fn_constructor_args=(graph,),
        fn_constructor_kwargs={"input_column": input_column},
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=_actor_cpus(concurrency),
        batch_size=batch_size,
        batch_format="numpy",
    )
    total = RateSums()
    try:
        for batch in partials.iter_batches(batch_format="numpy", batch_size=None):
            for blob in batch["sums"]:
                total.merge(pickle.loads(blob))  # written by our own actors
    except ray.exceptions.RayError as err:
        raise ValueError(f"the Ray job failed: {_ray_message(err)}") from None
    return total


class DatasetRates:
    """A Ray dataset (or shards read on a Ray cluster) as example data of
    :class:`~spikeonnx.analysis.GraphEnergy`.

    Parameters
    ----------
    data : ray.data.Dataset, or folder / glob / list of ``.npy`` shards
        The rows. Shards are checked against the model input first (errors name
        the file) and read with ``ray.data.read_numpy``.
    address : str, optional
        Cluster to connect to for shards (see :func:`connect`).
    concurrency, batch_size, input_column
        As for :func:`rate_sums`.

    Examples
    --------
    >>> GraphEnergy("model.onnx", DatasetRates("shards/*.npy", address="auto")).summary()  # doctest: +SKIP
    """

    def __init__(
        self,
        data: Any,
        *,
        address: Optional[str] = None,
        concurrency: int = 1,
        batch_size: int = 256,
        input_column: Optional[str] = None,
    ) -> None:
        self.data = data
        self.address = address
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.input_column = input_column

    def rate_sums(self, graph: Any) -> Any:
        """The exact sums over every row (see :func:`rate_sums`).

        Raises
        ------
        ValueError
            For a bad shard (naming it), or if rows were lost or counted twice.
        """
        expected: Optional[int] = None
        planned: List[Any] = []
        dataset = self.data
        batch_size = self.batch_size
        if not isinstance(dataset, ray.data.Dataset):
            spec = InputSpec.from_graph(graph)
            planned = plan_shards(dataset, spec)
            expected = sum(s.rows for s in planned)
            if spec.shape and spec.shape[0] is not None:
                batch_size = spec.shape[0]
            connect(self.address)
            dataset = _read([s.path for s in planned])
        try:
            sums = rate_sums(dataset, graph, input_column=self.input_column or (DATA_COLUMN if expected else None),
                             concurrency=self.concurrency, batch_size=batch_size)
        except ValueError:
            found = _diagnose(planned) if expected is not None else None
            if found is None:
                raise
            raise ValueError(f"the Ray job failed: {found}") from None
        if expected is not None and sums.rows != expected:
            raise ValueError(f"the rates cover {sums.rows} rows but the shards hold {expected} (rows lost or repeated)")
        return sums
