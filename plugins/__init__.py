"""zoo's built-in backbone plugins, one module per family (installed as `zoo_plugins`)."""
