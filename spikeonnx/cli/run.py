"""``spikeonnx run``: run an ONNX model on ``.npy``/``.npz`` input in onnxruntime."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..shards import is_shard_spec
from . import CLIError, positive_int, subcommand


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
    parser.add_argument("--stream", type=int, metavar="CHUNK",
                        help="feed the input in chunks of CHUNK timesteps through the streaming session, "
                             "carrying layer state between chunks (needs a model exported with --state-io)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--no-library", dest="library", action="store_false",
                        help="stock onnxruntime without the spikeonnx op library: the spiking ops run their "
                             "model-local function bodies (models exported with functions, the default)")

    def run(args: argparse.Namespace) -> int:
        import onnxruntime as ort

        from ..runtime import InferenceSession, StreamingSession

        if not Path(args.model).is_file():
            raise CLIError(f"model file not found: {args.model}")
        if args.stream is not None and args.stream <= 0:
            raise CLIError(f"--stream needs a positive number of timesteps, got {args.stream}")
        if is_shard_spec(args.data):
            return _run_shards(args)
        if args.output is None:
            args.output = "outputs.npz"
        options = ort.SessionOptions()
        if args.threads:
            options.intra_op_num_threads = args.threads
        start = time.perf_counter()
        if args.stream:
            session = StreamingSession(args.model, sess_options=options, library=args.library)
            feed = load_arrays(args.data, session.input_names)
            outputs = session.run_chunked(feed, chunk=args.stream)
        else:
            session = InferenceSession(args.model, sess_options=options, library=args.library)
            names = [i.name for i in session.get_inputs()]
            feed = load_arrays(args.data, names)
            values = session.run(None, feed)
            outputs = {o.name: v for o, v in zip(session.get_outputs(), values)}
        elapsed = time.perf_counter() - start
        np.savez(args.output, **outputs)
        for name, value in outputs.items():
            print(f"{name}: shape {tuple(value.shape)} {value.dtype}")
        print(f"wrote {args.output} ({elapsed:.3f} s)")
        return 0

    return run


def _run_shards(args: argparse.Namespace) -> int:
    """``spikeonnx run model 'shards/*.npy' -o out/``: one output .npz per shard."""
    import onnxruntime as ort

    from ..runtime import InferenceSession
    from ..shards import run_shards

    if args.output is None:
        raise CLIError("running shards needs -o/--output: the folder for one .npz per shard")
    if args.stream:
        raise CLIError("--stream runs one file; it does not combine with shards")
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    start = time.perf_counter()
    session = InferenceSession(args.model, sess_options=options, library=args.library)
    written = run_shards(session, args.data, args.output, batch_size=args.batch_size, overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    print(f"wrote {len(written)} output files to {args.output} ({elapsed:.3f} s)")
    return 0
