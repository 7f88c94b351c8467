"""An example zoo plugin: adds Inception V3 (TF Hub feature vector) as a backbone.

Install it as a package with this in its pyproject.toml:

    [project.entry-points.zoo]
    inception = "zoo_inception"

or, while writing it, point zoo at the file: ZOO_PLUGINS=path/to/zoo_inception.py zoo list
"""

from zoo.catalog.backbone import Backbone
from zoo.catalog.hookspecs import hookimpl


@hookimpl
def register_backbones(registry, register):
    register(
        Backbone(
            name="inception_v3",
            plugin="inception",
            handle="https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
            input_size=(299, 299),
            input_range=(0.0, 1.0),
            feature_dim=2048,
            params_m=21.8,
            imagenet_top1=77.9,
            paper="Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)",
        )
    )
