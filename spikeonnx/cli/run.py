"""``spikeonnx run``: run an ONNX model on ``.npy``/``.npz`` input in onnxruntime."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..fileio import atomic_write, check_output_path
from ..shards import is_shard_spec
from . import CLIError, is_library_error, positive_int, subcommand


def load_arrays(path: str, input_names: List[str]) -> Dict[str, np.ndarray]:
    """Read model inputs from ``.npy`` (the single input) or ``.npz`` (by input name).

    Parameters
    ----------
    path : str
        The data file.
    input_names : list of str
        Names of the graph inputs the caller must provide.

    Returns
    -------
    dict
        Input name -> array.
    """
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"input file not found: {file}")
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception as err:  # numpy raises several types for non-array files
        raise CLIError(f"cannot read {file} as .npy/.npz: {err}") from None
    if isinstance(loaded, np.ndarray):
        if len(input_names) != 1:
            raise CLIError(
                f"{file} holds one array but the model has inputs {input_names}; "
                "pass an .npz with one array per input name"
            )
        return {input_names[0]: loaded}
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    if len(input_names) == 1 and len(arrays) == 1:
        return {input_names[0]: next(iter(arrays.values()))}
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise CLIError(f"{file} lacks arrays for model inputs {missing} (it has {sorted(arrays)})")
    return {n: arrays[n] for n in input_names}


def thread_count(text: str) -> int:
    """argparse type of ``--threads``: 0 (onnxruntime's default) to 4 x the CPU count."""
    from ..runtime import check_threads

    try:
        return check_threads(int(text), "--threads")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err) if text.lstrip("+-").isdigit() else
                                         f"expected an integer, got {text!r}") from None


def npz_path(output: str) -> Path:
    """Where ``numpy.savez`` would write ``output``: ``.npz`` is appended unless it is there."""
    return Path(output if output.endswith(".npz") else output + ".npz")


def _session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Errors reach the user as one line through our own message; onnxruntime's log line
    # of the same failure would be a second one.
    options.log_severity_level = 4
    return options


@subcommand("run", help="Run an ONNX model (with spikeonnx ops) on .npy/.npz input; write outputs to .npz.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("data", help=".npy (single input) or .npz (one array per input name); or a folder "
                                     "or quoted glob ('shards/*.npy') of .npy shards, rows on axis 0")
    parser.add_argument("-o", "--output", default=None,
                        help="where to write the outputs: a .npz (default outputs.npz); for shards a folder "
                             "that gets one <shard name>.npz per shard")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="shards: rows per model call (default 256)")
    parser.add_argument("--overwrite", action="store_true",
                        help="shards: write into a non-empty output folder, replacing files of the same names")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="shards: run on a Ray cluster: 'auto', 'ray://host:10001', or no ADDRESS for a "
                             "local cluster (needs spikeonnx[ray] on every node)")
    parser.add_argument("--concurrency", type=positive_int, default=1,
                        help="--ray: number of actors, each with one session (default 1)")
    parser.add_argument("--stream", type=int, metavar="CHUNK",
                        help="feed the input in chunks of CHUNK timesteps through the streaming session, "
                             "carrying layer state between chunks (needs a model exported with --state-io)")
    parser.add_argument("--threads", type=thread_count, default=0,
                        help="intra-op threads, 1 to 4 x the CPU count (default 0: onnxruntime's default)")
    parser.add_argument("--no-library", dest="library", action="store_false",
                        help="stock onnxruntime without the spikeonnx op library: the spiking ops run their "
                             "model-local function bodies (models exported with functions, the default)")

    def run(args: argparse.Namespace) -> int:
        if not Path(args.model).is_file():
            raise CLIError(f"model file not found: {args.model}")
        if args.stream is not None and args.stream <= 0:
            raise CLIError(f"--stream needs a positive number of timesteps, got {args.stream}")
        if is_shard_spec(args.data):
            return _run_shards(args)
        if args.ray is not None:
            raise CLIError("--ray runs shards (a folder or glob of .npy files), not one file")
        # Checked before the run: a wrong output path should not cost a whole run, and
        # the output must never replace the model or the data.
        target = npz_path(args.output if args.output is not None else "outputs.npz")
        check_output_path(target, args.model, args.data)
        start = time.perf_counter()
        try:
            outputs = _run_model(args)
        except Exception as err:
            if not is_library_error(err):
                raise
            raise CLIError(f"{args.model}: onnxruntime failed: {err}") from None
        elapsed = time.perf_counter() - start
        with atomic_write(target) as handle:
            np.savez(handle, **outputs)
        for name, value in outputs.items():
            print(f"{name}: shape {tuple(value.shape)} {value.dtype}")
        print(f"wrote {target} ({elapsed:.3f} s)")
        return 0

    return run


def _run_model(args: argparse.Namespace) -> Dict[str, np.ndarray]:
    """Run the model of ``args`` on its data file; output name -> value."""
    from ..runtime import InferenceSession, StreamingSession

    options = _session_options(args.threads)
    if args.stream:
        stream = StreamingSession(args.model, sess_options=options, library=args.library)
        feed = load_arrays(args.data, stream.input_names)
        return stream.run_chunked(feed, chunk=args.stream)
    session = InferenceSession(args.model, sess_options=options, library=args.library)
    feed = load_arrays(args.data, [i.name for i in session.get_inputs()])
    values = session.run(None, feed)
    return {o.name: v for o, v in zip(session.get_outputs(), values, strict=True)}


def _run_shards(args: argparse.Namespace) -> int:
    """``spikeonnx run model 'shards/*.npy' -o out/``: one output .npz per shard."""
    from ..runtime import InferenceSession
    from ..shards import run_shards

    if args.output is None:
        raise CLIError("running shards needs -o/--output: the folder for one .npz per shard")
    if args.stream:
        raise CLIError("--stream runs one file; it does not combine with shards")
    start = time.perf_counter()
    try:
        if args.ray is not None:
            distributed = import_distributed()
            written = distributed.run_shards(
                args.model, args.data, args.output, address=args.ray, concurrency=args.concurrency,
                batch_size=args.batch_size, overwrite=args.overwrite, library=args.library,
            )
        else:
            session = InferenceSession(args.model, sess_options=_session_options(args.threads),
                                       library=args.library)
            written = run_shards(session, args.data, args.output, batch_size=args.batch_size,
                                 overwrite=args.overwrite)
    except Exception as err:
        if not is_library_error(err):
            raise
        raise CLIError(f"{args.model}: onnxruntime failed: {err}") from None
    elapsed = time.perf_counter() - start
    print(f"wrote {len(written)} output files to {args.output} ({elapsed:.3f} s)")
    return 0


def import_distributed():
    """:mod:`spikeonnx.distributed`, or a CLIError saying how to install Ray."""
    try:
        from .. import distributed
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("ray"):
            raise
        raise CLIError("--ray needs Ray: pip install 'spikeonnx[ray]' (on every node of the cluster)") from None
    return distributed
