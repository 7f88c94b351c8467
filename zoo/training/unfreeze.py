"""`--unfreeze`: which part of a backbone's SavedModel trains in the second stage of a fine-tune.

A SavedModel behind `hub.KerasLayer` exposes variables, not Keras layers, so "the top N layers"
is found from the model's computation itself: its forward function (inference mode) is walked,
nested functions included, and each trainable variable is placed by its first read. That is the
data-flow order, from the input to the output, whatever the variables are named or the order the
SavedModel lists them in. A *layer* is one weight kernel (a variable of rank 2 or more: a
convolution, a depthwise convolution, a dense matrix) with the vectors read after it up to the
next kernel (its bias, its BatchNorm scale and offset). EfficientNet-Lite0 has 49: the stem, 47
in its 16 MBConv blocks (2 in the first, 3 in each other: expand, depthwise, project), the head.

The chosen variables are the only trainable weights of the model's backbone: the others get no
gradient, so they do not change. The backbone always runs in inference mode (`training=False`):
BatchNorm normalises with, and keeps, its ImageNet statistics, as Keras's fine-tuning guide
advises: batch statistics of a small batch are noisy, and frozen layers must stay frozen.

Specs: `all` (every trainable variable), `N` (the top N layers, N >= 1; more than the backbone
has means all of them), or a fraction `0 < f < 1` of the layers, rounded up (0.25 of Lite0's 49
is 13).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from zoo.errors import UsageError, ZooError

SPEC_HELP = (
    "give all, a number of top layers (e.g. 10) or a fraction of the backbone's layers "
    "between 0 and 1 (e.g. 0.25)"
)
# Ops that read a resource variable's value (a read anywhere places the variable).
_READS = {"ReadVariableOp", "ResourceGather", "ResourceGatherNd"}
_CALLS = {"StatefulPartitionedCall", "PartitionedCall"}


class CannotUnfreeze(ZooError):
    """The backbone's SavedModel does not allow the part of it --unfreeze asks for."""


@dataclass(frozen=True)
class Unfreeze:
    """A parsed --unfreeze spec: everything, the top `layers`, or a `fraction` of the layers."""

    text: str
    layers: int | None = None
    fraction: float | None = None

    @property
    def everything(self) -> bool:
        return self.layers is None and self.fraction is None

    def count(self, available: int) -> int:
        """How many of `available` layers, counted from the top, this spec unfreezes."""
        if self.everything:
            return available
        if self.layers is not None:
            return min(self.layers, available)
        return max(1, math.ceil(self.fraction * available - 1e-9))


def parse_unfreeze(value: str | int | float) -> Unfreeze:
    """`all`, an integer N >= 1, or a fraction in (0, 1); anything else is a usage error."""
    text = str(value).strip()
    bad = UsageError(f"--unfreeze {text}: {SPEC_HELP}")
    if isinstance(value, bool):
        raise bad
    if text.lower() == "all":
        return Unfreeze("all")
    if re.fullmatch(r"[+-]?\d+", text):
        if int(text) < 1:
            raise UsageError(f"--unfreeze {text} unfreezes nothing: {SPEC_HELP}")
        return Unfreeze(str(int(text)), layers=int(text))
    try:
        fraction = float(text)
    except ValueError:
        raise bad from None
    if not 0 < fraction < 1:  # also refuses nan and inf
        raise UsageError(
            f"--unfreeze {text}: a fraction must be between 0 and 1 (use all for the whole "
            "backbone, or a whole number of top layers)"
        )
    return Unfreeze(f"{fraction:g}", fraction=fraction)


# ---- Ordering a SavedModel's variables -----------------------------------------------------


def flow_order(layer: Any, input_shape: tuple[int, ...], variables: list[Any]) -> list[Any] | None:
    """`variables` in the order the layer's forward pass first reads them; None where the walk
    cannot place every one of them (a control-flow op hides reads, or the graph is unreadable)."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, *input_shape], tf.float32)
    try:
        traced = tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec)
    except Exception:  # a layer we cannot trace alone: no order
        return None
    by_handle = {id(v.handle): v for v in variables}
    sources = {}  # placeholder node name in the outer graph -> variable
    for external, internal in traced.graph.captures:
        if id(external) in by_handle:
            sources[internal.op.name] = by_handle[id(external)]
    graph_def = traced.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    seen: dict[int, Any] = {}
    _walk(graph_def.node, sources, library, seen, depth=0)
    if len(seen) != len(variables):
        return None
    return list(seen.values())


def _source(reference: str) -> str:
    """The producing node of an input reference (`node`, `node:1`, `node:output:0`, `^node`)."""
    return reference.lstrip("^").split(":")[0]


def _walk(nodes, sources: dict[str, Any], library: dict, seen: dict, depth: int) -> None:
    if depth > 50:
        return
    for node in nodes:
        inputs = [sources.get(_source(ref)) for ref in node.input if not ref.startswith("^")]
        if node.op in _READS and inputs and inputs[0] is not None:
            seen.setdefault(id(inputs[0]), inputs[0])
        elif node.op in _CALLS and node.attr["f"].func.name in library:
            function = library[node.attr["f"].func.name]
            arguments = [arg.name for arg in function.signature.input_arg]
            inner = {name: v for name, v in zip(arguments, inputs, strict=False) if v is not None}
            if inner:
                _walk(function.node_def, inner, library, seen, depth + 1)
        elif node.op == "Identity" and inputs and inputs[0] is not None:
            sources[node.name] = inputs[0]  # a resource passed through


def group_layers(ordered: list[Any]) -> list[list[Any]]:
    """Variables in data-flow order -> layers: each kernel (rank >= 2) with the vectors after it."""
    groups: list[list[Any]] = []
    for variable in ordered:
        if len(variable.shape) >= 2 or not groups:
            groups.append([variable])
        else:
            groups[-1].append(variable)
    return groups


@dataclass
class Selection:
    """What a spec unfreezes in one backbone: the variables, and the facts a run records."""

    variables: list[Any]
    facts: dict[str, Any]


def select(layer: Any, spec: Unfreeze, input_shape: tuple[int, ...], name: str) -> Selection:
    """The trainable variables `spec` unfreezes in the backbone `layer` (a hub.KerasLayer or any
    tf_keras layer built with trainable=True), or a one-line CannotUnfreeze."""
    candidates = list(layer.trainable_weights)
    if not candidates:
        raise CannotUnfreeze(
            f"{name}: its SavedModel lists no trainable variables (not TF Hub's Reusable "
            "SavedModel API), so nothing can be unfrozen; run it without --unfreeze to train "
            "the head on the frozen backbone"
        )
    parameters = sum(int(math.prod(v.shape)) for v in candidates)
    if spec.everything:
        return Selection(candidates, _facts(spec, candidates, parameters, None, None))
    ordered = flow_order(layer, input_shape, candidates)
    if ordered is None:
        raise CannotUnfreeze(
            f"{name}: its SavedModel's variables cannot be put in data-flow order, so "
            f"--unfreeze {spec.text} cannot pick the top layers; use --unfreeze all to "
            "fine-tune the whole backbone"
        )
    groups = group_layers(ordered)
    count = spec.count(len(groups))
    chosen = [v for group in groups[len(groups) - count :] for v in group]
    return Selection(chosen, _facts(spec, chosen, parameters, count, len(groups)))


def _facts(spec, chosen, parameters, count, layers) -> dict[str, Any]:
    return {
        "spec": spec.text,
        "layers": count,  # None for `all`: no order was needed
        "of_layers": layers,
        "variables": len(chosen),
        "parameters": sum(int(math.prod(v.shape)) for v in chosen),
        "of_parameters": parameters,
        # the first variable unfrozen, in data-flow order (names alone may not say which it is)
        "lowest": f"{chosen[0].name} {list(chosen[0].shape)}" if chosen and count else None,
        "batch_norm": "inference mode (ImageNet statistics kept)",
    }


# ---- The backbone, partly trainable --------------------------------------------------------


@functools.cache
def _partly_trainable_class() -> type:
    import tf_keras as keras

    class PartlyTrainable(keras.layers.Layer):
        """A frozen backbone layer of which only `chosen` variables train.

        The inner layer stays frozen (so hub.KerasLayer calls its SavedModel with
        training=False: BatchNorm in inference mode); the chosen variables are registered as
        this layer's own trainable weights, so they are all the optimizer sees of the backbone.
        """

        def __init__(self, inner: Any, chosen: list[Any], **kwargs: Any):
            super().__init__(name="partly_trainable_backbone", **kwargs)
            self.inner = inner
            inner.trainable = False
            for variable in chosen:
                self.add_weight(
                    name=variable.name.split(":")[0],
                    shape=variable.shape,
                    dtype=variable.dtype,
                    trainable=True,
                    experimental_autocast=False,
                    getter=lambda *_, _v=variable, **__: _v,
                )

        def call(self, inputs: Any) -> Any:
            return self.inner(inputs, training=False)

    return PartlyTrainable


def partly_trainable(layer: Any, selection: Selection) -> Any:
    """`layer` (loaded with trainable=True) wrapped so that only `selection` trains."""
    return _partly_trainable_class()(layer, selection.variables)
