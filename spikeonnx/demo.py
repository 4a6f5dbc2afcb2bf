"""The end-to-end demo: train -> save -> export -> spiking inference -> energy report.

A small spiking convolutional classifier learns scikit-learn's bundled 8x8 digits
(no downloads) with spiking-aware training, is saved as ``model.keras``, exported
to ``model.onnx``, run on the test split in onnxruntime with our op library, and
analysed for energy on every registered device. Needs the ``keras`` extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = ["build_conv_model", "run_demo", "DemoResult"]


@dataclass
class DemoResult:
    """What the demo measured (also printed)."""

    keras_accuracy: float
    onnx_accuracy: float
    same_predictions: float
    keras_seconds: float
    onnx_seconds: float
    total_energy: Dict[str, float]
    files: Dict[str, Path]


def save_keras_atomically(model: Any, path: Path) -> None:
    """``model.save(path)`` through a temporary ``.keras`` file in the same folder.

    Keras writes the archive in place; written to a temporary name, fsynced and
    renamed over ``path``, an interrupted save leaves the old file as it was (as
    :func:`spikeonnx.fileio.atomic_write` does for our own files).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)  # mkstemp makes 0600; give the file what open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def build_conv_model(dt: float = 0.01, seed: int = 0, max_rate: float = 100.0) -> Any:
    """The demo's spiking convolutional digits classifier, inputs (batch, time, 8, 8, 1).

    ``Rescaling -> Conv2D -> SpikingActivation -> AveragePooling2D -> Flatten ->
    Dense -> SpikingActivation -> mean over time -> Dense(10)``; the spatial layers
    are wrapped in ``TimeDistributed``.

    Parameters
    ----------
    dt : float
        Timestep of the spiking layers, in seconds.
    seed : int
        Seed of the weights and of the initial voltages.
    max_rate : float
        Input rate (Hz) of a white pixel: pixel intensities in [0, 1] are scaled
        to rates so that neurons fire several times within a short presentation.

    Returns
    -------
    keras.Model
        Uncompiled functional model producing logits (batch, 10).
    """
    import keras

    import keras_layers

    def init(offset: int) -> Any:
        return keras.initializers.GlorotUniform(seed=seed + offset)

    inputs = keras.Input((None, 8, 8, 1), name="image")
    x = keras.layers.Rescaling(max_rate, name="to_rates")(inputs)
    x = keras.layers.TimeDistributed(
        keras.layers.Conv2D(8, 3, padding="same", kernel_initializer=init(0)), name="conv"
    )(x)
    x = keras_layers.SpikingActivation("relu", dt=dt, seed=seed, name="conv_spikes")(x)
    x = keras.layers.TimeDistributed(keras.layers.AveragePooling2D(2), name="pool")(x)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flatten")(x)
    x = keras.layers.Dense(64, kernel_initializer=init(1), name="hidden")(x)
    x = keras_layers.SpikingActivation("relu", dt=dt, seed=seed + 1, name="hidden_spikes")(x)
    x = keras.layers.GlobalAveragePooling1D(name="time_average")(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init(2), name="logits")(x)
    return keras.Model(inputs, outputs, name="spiking_digits")


def _images(sequences: np.ndarray) -> np.ndarray:
    """(N, T, 64) digit sequences -> (N, T, 8, 8, 1) images."""
    return sequences.reshape(*sequences.shape[:2], 8, 8, 1)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _bar(progress: bool, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, live only if ``progress`` and stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(disable=not (progress and _is_terminal(sys.stderr)), file=sys.stderr, **kwargs)


def _onnx_predict(session: Any, x: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    """Logits of ``x`` in onnxruntime, batch by batch with a progress bar."""
    name = session.get_inputs()[0].name
    chunks = []
    starts = range(0, len(x), batch_size)
    for start in _bar(progress, iterable=starts, desc="onnxruntime inference", unit="batch"):
        chunks.append(session.run(None, {name: x[start:start + batch_size]})[0])
    return np.concatenate(chunks)


def _epoch_logger(echo: Callable[[str], None], epochs: int) -> Any:
    """A Keras callback printing one plain line per epoch (for logs: no bar, no escapes)."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            metrics = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
            echo(f"epoch {epoch + 1}/{epochs}: {metrics} ({time.perf_counter() - self._start:.1f} s)")

    return EpochLog()


def run_demo(
    out: Path = Path("spikeonnx-demo"),
    epochs: int = 15,
    timesteps: int = 20,
    train_timesteps: int = 4,
    dt: float = 0.01,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    width: Optional[int] = None,
) -> DemoResult:
    """Train, save, export, run and analyse the spiking digits classifier.

    Parameters
    ----------
    out : pathlib.Path
        Folder for ``model.keras``, ``model.onnx`` and the figures ``energy.png``,
        ``rates.png`` (mean rate per layer), ``spikes.png`` (spike raster of one test
        image) and ``firing_rates.png`` (distribution of per-neuron firing rates).
    epochs : int
        Training epochs.
    timesteps : int
        Timesteps each test image is presented for at inference.
    train_timesteps : int
        Timesteps per image during (spiking-aware) training.
    dt : float
        Timestep of the spiking layers, in seconds.
    progress : bool
        Show live progress bars where they go to a terminal (Keras's on stdout, the
        others on stderr). Elsewhere, and with ``progress=False``, training reports one
        line per epoch through ``echo`` and the other stages none.
    echo : callable
        Where the report lines go.
    width : int, optional
        Width of the energy table's lines (devices are split over several tables to
        fit); default: the terminal's (:func:`shutil.get_terminal_size`).

    Returns
    -------
    DemoResult
    """
    for label, value in (("epochs", epochs), ("timesteps", timesteps), ("train_timesteps", train_timesteps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an int >= 1, got {value!r}")
    import keras

    from .analysis import AnalysisGraph, GraphEnergy
    from .analysis.rates import RateAccumulator
    from .devices import DEVICES
    from .examples import digits
    from .exporter import export
    from .plots import plot_energy, plot_firing_rates, plot_rates, plot_spikes, record_spikes
    from .runtime import InferenceSession

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)

    train = digits.load_data(n_steps=train_timesteps)
    test = digits.load_data(n_steps=timesteps)
    x_train, x_test = _images(train.x_train), _images(test.x_test)
    echo(f"digits: {len(x_train)} training and {len(x_test)} test images (8x8), "
         f"{train_timesteps} timesteps in training, {timesteps} at inference")

    model = build_conv_model(dt=dt)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    echo(f"training ({epochs} epochs, spiking-aware)")
    # Keras's bars (on stdout) are live only on a terminal; in a log, one line per epoch
    keras_bars = progress and _is_terminal(sys.stdout)
    model.fit(x_train, train.y_train, epochs=epochs, batch_size=32, verbose=1 if keras_bars else 0,
              callbacks=[] if keras_bars else [_epoch_logger(echo, epochs)])
    keras_path = out / "model.keras"
    save_keras_atomically(model, keras_path)
    model = keras.saving.load_model(keras_path)  # evaluate what was saved

    onnx_path = out / "model.onnx"
    with _bar(progress, total=1, desc="ONNX export", unit="model") as bar:
        export(model, onnx_path)
        bar.update(1)
    echo(f"saved {keras_path} and exported {onnx_path}")

    batch = 64
    start = time.perf_counter()
    keras_logits = model.predict(x_test, batch_size=batch, verbose=1 if keras_bars else 0)
    keras_seconds = time.perf_counter() - start
    session = InferenceSession(onnx_path)
    _onnx_predict(session, x_test[:batch], batch, progress=False)  # warm-up
    start = time.perf_counter()
    onnx_logits = _onnx_predict(session, x_test, batch, progress)
    onnx_seconds = time.perf_counter() - start

    keras_pred, onnx_pred = keras_logits.argmax(-1), onnx_logits.argmax(-1)
    keras_acc = float(np.mean(keras_pred == test.y_test))
    onnx_acc = float(np.mean(onnx_pred == test.y_test))
    same = float(np.mean(keras_pred == onnx_pred))
    echo(f"Keras accuracy:       {keras_acc:.4f} ({keras_seconds:.2f} s)")
    echo(f"onnxruntime accuracy: {onnx_acc:.4f} ({onnx_seconds:.2f} s, "
         f"{keras_seconds / onnx_seconds:.1f}x faster)")
    echo(f"identical predictions on {same:.2%} of the {len(x_test)} test images")

    rate_data = x_test[:128]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # rates measured batch by batch for a live bar; the sums are exact, so the
        # result is that of one call on all of rate_data
        accumulator = RateAccumulator(AnalysisGraph(onnx_path))
        for start in _bar(progress, iterable=range(0, len(rate_data), 32), desc="firing rates", unit="batch"):
            accumulator.add(rate_data[start:start + 32])
        energy = GraphEnergy(onnx_path, example_data=accumulator.sums)
    for warning in caught:
        echo(f"note: {warning.message}")
    names = [d.name for d in DEVICES.values()]
    echo(energy.summary_string(
        columns=("name", "output_shape", "connections", "neurons", "rate", *(f"energy {d}" for d in names)),
        timesteps_per_inference=timesteps, dt=dt,
        width=shutil.get_terminal_size().columns if width is None else width,
    ))
    report = energy.to_dict(names, timesteps_per_inference=timesteps, dt=dt)
    files = {"keras": keras_path, "onnx": onnx_path}
    files["energy"] = plot_energy(report, out / "energy.png", names)
    files["rates"] = plot_rates(report, out / "rates.png")
    recording = record_spikes(onnx_path, rate_data)
    files["spikes"] = plot_spikes(recording, out / "spikes.png")
    files["firing_rates"] = plot_firing_rates(recording, out / "firing_rates.png")
    echo(f"figures in {out}: " + ", ".join(files[k].name for k in ("energy", "rates", "spikes", "firing_rates")))
    return DemoResult(keras_acc, onnx_acc, same, keras_seconds, onnx_seconds, dict(report["total_energy"]), files)
