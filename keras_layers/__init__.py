"""KerasSpiking API on Keras 3.

A drop-in replacement for ``keras_spiking`` 0.3.0::

    import keras_layers as keras_spiking

Spiking activations and lowpass/alpha filters as Keras 3 layers and RNN cells,
activity regularizers, a ``dt`` scheduler callback, a mean constraint and a
Keras-model energy estimator.
"""

from . import callbacks, config, constraints, layers, model_energy, regularizers, version
from .config import default
from .layers import (
    Alpha,
    AlphaCell,
    KerasSpikingCell,
    KerasSpikingLayer,
    Lowpass,
    LowpassCell,
    SpikingActivation,
    SpikingActivationCell,
)
from .model_energy import ModelEnergy
from .version import version as __version__

__all__ = [
    "__version__",
    "default",
    "layers",
    "config",
    "constraints",
    "callbacks",
    "regularizers",
    "model_energy",
    "version",
    "KerasSpikingCell",
    "KerasSpikingLayer",
    "SpikingActivationCell",
    "SpikingActivation",
    "LowpassCell",
    "Lowpass",
    "AlphaCell",
    "Alpha",
    "ModelEnergy",
]
