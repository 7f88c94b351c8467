"""A real hub.KerasLayer, loaded from a local SavedModel handle, as every backbone is."""

import numpy as np
from conftest import TINY_FEATURES, TINY_INPUT

from zoo.catalog.plugins import load_catalog
from zoo.extraction.layers import check_feature_size, feature_extractor
from zoo.sources.hub import is_ready
from zoo.training.models import create_model


def test_local_savedmodel_loads_as_hub_layer_with_declared_feature_size(tiny_registry):
    backbone = load_catalog(tiny_registry).get("tiny")
    assert is_ready(backbone)
    check_feature_size(backbone)  # raises if the output size differs from feature_dim
    features = feature_extractor(backbone)(np.zeros((2, TINY_INPUT, TINY_INPUT, 3), "float32"))
    assert features.shape == (2, TINY_FEATURES)


def test_file_url_handle_works(tmp_path, tiny_savedmodel):
    from conftest import registry_text

    path = tmp_path / "registry.toml"
    path.write_text(registry_text(tiny_savedmodel.as_uri()))
    backbone = load_catalog(path).get("tiny")
    assert is_ready(backbone)
    check_feature_size(backbone)


def test_create_model_freezes_the_hub_layer(tiny_registry):
    import tensorflow_hub as hub

    model = create_model(load_catalog(tiny_registry).get("tiny"), num_classes=3)
    hub_layers = [layer for layer in model.layers if isinstance(layer, hub.KerasLayer)]
    assert len(hub_layers) == 1 and not hub_layers[0].trainable
    probabilities = model(np.full((1, TINY_INPUT, TINY_INPUT, 3), 255.0, "float32")).numpy()
    assert probabilities.shape == (1, 3) and np.isclose(probabilities.sum(), 1.0)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TINY_FEATURES * 3 + 3  # only the new head trains


def test_wrong_feature_dim_is_caught(tmp_path, tiny_savedmodel):
    import pytest
    from conftest import registry_text

    from zoo.errors import BackboneUnavailable

    path = tmp_path / "registry.toml"
    path.write_text(
        registry_text(str(tiny_savedmodel)).replace("feature_dim = 8", "feature_dim = 9")
    )
    with pytest.raises(
        BackboneUnavailable, match="declares feature_dim = 9, but the model gives 8 features"
    ):
        check_feature_size(load_catalog(path).get("tiny"))
