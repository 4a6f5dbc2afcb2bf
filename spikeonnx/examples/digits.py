"""A small spiking classifier of scikit-learn's 8x8 handwritten digits.

The image is shown to the network as a constant input for ``n_steps`` timesteps:
``Dense -> SpikingActivation(relu) -> GlobalAveragePooling1D (over time) ->
Dense(10)``, trained with spiking-aware training (spikes in the forward pass, the
ReLU's gradient in the backward pass). Used by the export tests, the inference
benchmark and the demo.

Example
-------
A few epochs already take the classifier well above chance (0.1):

>>> import keras
>>> from spikeonnx.examples import digits
>>> keras.utils.set_random_seed(0)
>>> data = digits.load_data(n_steps=10)
>>> data.x_train.shape, data.x_test.shape
((1347, 10, 64), (450, 10, 64))
>>> model = digits.build_model()
>>> history = digits.train(model, data, epochs=3)
>>> digits.accuracy(model.predict(data.x_test, verbose=0), data.y_test) > 0.3
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["DigitsData", "load_data", "to_sequences", "build_model", "train", "accuracy"]


@dataclass
class DigitsData:
    """Train/test split of the digits, as (N, T, 64) float32 sequences and int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def to_sequences(images: np.ndarray, n_steps: int) -> np.ndarray:
    """Repeat flattened images over time: (N, 64) or (N, 8, 8) -> (N, n_steps, 64) float32.

    Pixel values (0..16 in scikit-learn's digits) are scaled to [0, 1].

    Raises
    ------
    ValueError
        If ``n_steps`` is not a positive int or the images are not 8x8.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps <= 0:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 2 or images[0].size != 64:
        raise ValueError(f"expected 8x8 digit images of shape (N, 64) or (N, 8, 8), got {images.shape}")
    flat = images.reshape(len(images), 64) / np.float32(16.0)
    return np.ascontiguousarray(np.repeat(flat[:, None, :], int(n_steps), axis=1))


def load_data(n_steps: int = 10, test_size: float = 0.25, seed: int = 0) -> DigitsData:
    """Load scikit-learn's digits and split them (stratified) into train and test sequences.

    Parameters
    ----------
    n_steps : int
        Timesteps each image is shown for.
    test_size : float
        Fraction of the 1797 images held out for testing.
    seed : int
        Seed of the split.

    Returns
    -------
    DigitsData
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=test_size, random_state=seed, stratify=data.target
    )
    return DigitsData(
        to_sequences(x_train, n_steps),
        y_train.astype(np.int64),
        to_sequences(x_test, n_steps),
        y_test.astype(np.int64),
    )


def build_model(hidden: int = 64, dt: float = 0.01, seed: int = 0, rate_scale: float = 100.0) -> Any:
    """Build the (uncompiled) spiking digits classifier, inputs (batch, time, 64).

    Parameters
    ----------
    hidden : int
        Number of spiking units.
    dt : float
        Timestep of the spiking layer, in seconds.
    seed : int
        Seed of the weight initialisation and of the initial voltages.
    rate_scale : float
        Initial scale of the hidden pre-activations, so that the spiking units
        start in a useful firing-rate range (a few spikes over the sequence).

    Returns
    -------
    keras.Model
        Functional model with outputs of shape (batch, 10) (logits).
    """
    import keras

    import keras_layers

    init = keras.initializers.VarianceScaling(scale=rate_scale, mode="fan_in", distribution="uniform", seed=seed)
    inputs = keras.Input((None, 64), name="image")
    x = keras.layers.Dense(hidden, kernel_initializer=init, name="hidden")(inputs)
    x = keras_layers.SpikingActivation(
        "relu", dt=dt, seed=seed, spiking_aware_training=True, name="spikes"
    )(x)
    x = keras.layers.GlobalAveragePooling1D(name="rate")(x)
    outputs = keras.layers.Dense(
        10, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1), name="logits"
    )(x)
    return keras.Model(inputs, outputs, name="digits")


def train(
    model: Any,
    data: DigitsData,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    verbose: int = 0,
) -> Any:
    """Compile ``model`` (Adam, sparse cross-entropy on logits) and fit it on the training split.

    Returns
    -------
    keras.callbacks.History
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(
        data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=verbose, shuffle=True
    )


def accuracy(logits: np.ndarray, labels: np.ndarray, predictions: Optional[np.ndarray] = None) -> float:
    """Fraction of samples whose arg-max logit equals the label.

    Raises
    ------
    ValueError
        If the numbers of logits and labels differ.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"expected logits (N, classes) for {len(labels)} labels, got shape {logits.shape}")
    predicted = np.argmax(logits, axis=-1) if predictions is None else np.asarray(predictions)
    return float(np.mean(predicted == labels))
