"""An example zoo plugin: adds Inception V3 (TF Hub feature vector) as a backbone.

Install it as a package with this in its pyproject.toml:

    [project.entry-points.zoo]
    zoo_inception = "zoo_inception"

or, while writing it, point zoo at the file: ZOO_PLUGINS=path/to/zoo_inception.py zoo list
"""

import zoo


@zoo.hookimpl
def register_backbones(register):
    register(
        zoo.Backbone(
            name="inception_v3",
            handle="https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
            input_size=(299, 299),
            input_range=(0.0, 1.0),
            feature_dim=2048,
            family="inception",
            params_m=21.8,
            imagenet_top1=77.9,
            paper="Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)",
        )
    )
