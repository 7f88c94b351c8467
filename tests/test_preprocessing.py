"""Preprocessing as data: what a backbone declares is what its network is fed."""

import numpy as np
import pytest
from conftest import TINY_FEATURES
from PIL import Image

import zoo
from zoo.data.decode import load_pixels
from zoo.errors import RegistryError

CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR order, 0..255 units
TORCH_STD = (57.375, 57.12, 58.395)


def caffe_backbone(handle: str, **extra) -> zoo.Backbone:
    return zoo.Backbone(
        name="caffe",
        handle=handle,
        input_size=(32, 32),
        feature_dim=TINY_FEATURES,
        channel_order="BGR",
        mean=CAFFE_MEAN,
        std=TORCH_STD,
        **extra,
    )


def test_bgr_mean_std_backbone_matches_hand_preprocessed_pixels(tiny_savedmodel):
    import tensorflow as tf

    from zoo.extraction.layers import feature_extractor

    backbone = caffe_backbone(str(tiny_savedmodel))
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    by_zoo = feature_extractor(backbone)(pixels).numpy()

    by_hand = (pixels[..., ::-1] - np.array(CAFFE_MEAN)) / np.array(TORCH_STD)
    network = tf.saved_model.load(str(tiny_savedmodel))
    expected = network(tf.constant(by_hand, tf.float32)).numpy()
    assert np.abs(by_zoo - expected).max() <= 1e-5
    # and it is not what plain RGB 0..1 scaling would give: the declaration matters
    plain = network(tf.constant(pixels / 255.0, tf.float32)).numpy()
    assert np.abs(by_zoo - plain).max() > 1e-2


def test_input_range_is_the_short_form_of_mean_and_std():
    short = zoo.Backbone(
        name="a", handle="/m", input_size=(8, 8), feature_dim=1, input_range=(-1.0, 1.0)
    )
    long = zoo.Backbone(
        name="a", handle="/m", input_size=(8, 8), feature_dim=1, mean=(127.5,) * 3, std=(127.5,) * 3
    )
    assert short.preprocessing == long.preprocessing


def test_centre_crop_resizes_then_crops_the_middle(tmp_path):
    # A 100x100 image: a 60x60 red square centred on white. crop_fraction 0.6 at 30x30 resizes
    # to 50x50 and keeps the middle 30x30, i.e. (nearly) only the red square.
    image = np.full((100, 100, 3), 255, np.uint8)
    image[20:80, 20:80] = (200, 0, 0)
    path = tmp_path / "square.png"
    Image.fromarray(image).save(path)
    steps = zoo.Preprocessing(input_size=(30, 30), crop_fraction=0.6, interpolation="bicubic")
    assert steps.resize_to(100, 100) == (50, 50)
    # keeping the aspect ratio: a 200x100 image covers 50x50 at 100x50, then its centre is cut
    assert steps.resize_to(200, 100) == (100, 50)
    cropped = load_pixels(path, steps)
    assert cropped.shape == (30, 30, 3)
    assert np.abs(cropped.reshape(-1, 3).mean(axis=0) - (200, 0, 0)).max() < 3
    whole = load_pixels(path, zoo.Preprocessing(input_size=(30, 30)))
    assert whole.reshape(-1, 3).mean(axis=0)[1] > 50  # the white border is still there


def test_preprocessing_is_part_of_the_feature_cache_key(tiny_savedmodel):
    from zoo.extraction.cache import backbone_key

    plain = zoo.Backbone(name="t", handle=str(tiny_savedmodel), input_size=(32, 32), feature_dim=8)
    keys = {
        backbone_key(backbone, tiny_savedmodel)
        for backbone in (
            plain,
            caffe_backbone(str(tiny_savedmodel)),
            zoo.Backbone(**{**vars_of(plain), "interpolation": "bicubic"}),
            zoo.Backbone(**{**vars_of(plain), "crop_fraction": 0.875}),
        )
    }
    assert len(keys) == 4


def vars_of(backbone: zoo.Backbone) -> dict:
    import dataclasses

    return {f.name: getattr(backbone, f.name) for f in dataclasses.fields(backbone)}


@pytest.mark.parametrize(
    "extra, wanted",
    [
        ({"mean": (1.0, 2.0, 3.0)}, "both 'mean' and 'std'"),
        ({"mean": (0.0,) * 3, "std": (0.0, 1.0, 1.0)}, "'std' must be positive"),
        ({"input_range": (0.0, 1.0), "mean": (0.0,) * 3, "std": (1.0,) * 3}, "not both"),
        ({"channel_order": "RBG"}, "'channel_order'"),
        ({"interpolation": "cubic"}, "'interpolation'"),
        ({"crop_fraction": 1.5}, "'crop_fraction'"),
        ({"crop_fraction": 0.001}, "'crop_fraction'"),
        ({"input_size": (0, 8)}, "'input_size'"),
        ({"feature_dim": 0}, "'feature_dim'"),
        ({"name": "../../etc"}, "names use lowercase"),
        ({"input_range": (0.0,)}, "'input_range'"),
        ({"input_range": (0.0, float("inf"))}, "finite"),
    ],
)
def test_bad_preprocessing_is_one_line_naming_the_field(extra, wanted):
    with pytest.raises(RegistryError) as caught:
        zoo.Backbone(
            **{"name": "bad", "handle": "/m", "input_size": (8, 8), "feature_dim": 1, **extra}
        )
    message = str(caught.value)
    assert wanted in message and "\n" not in message
