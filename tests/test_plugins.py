import textwrap

from conftest import SHIPPED_BACKBONES

from zoo.catalog.plugins import load_catalog

PLUGIN_ADDING_A_BACKBONE = """
from zoo.catalog.backbone import Backbone
from zoo.catalog.hookspecs import hookimpl

@hookimpl
def register_backbones(registry, register):
    register(Backbone(name="{name}", plugin="{plugin}", handle="/models/x",
                      input_size=(224, 224), input_range=(0.0, 1.0), feature_dim=4))
"""


def write_plugin(folder, name, body):
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_builtin_plugins_register_the_registry_backbones():
    catalog = load_catalog()
    assert catalog.problems == []
    assert set(catalog.backbones) >= SHIPPED_BACKBONES
    assert catalog.backbones["resnet50v2"].plugin == "resnet"
    assert {"resnet", "efficientnet", "efficientnet_lite", "mobilenet", "scratch"} <= set(
        catalog.plugins.versions
    )


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    write_plugin(
        tmp_path, "zoo_fancy", PLUGIN_ADDING_A_BACKBONE.format(name="fancy", plugin="fancy")
    )
    dist = tmp_path / "zoo_fancy-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-fancy\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[zoo]\nfancy = zoo_fancy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = load_catalog()
    assert "fancy" in catalog.backbones
    assert catalog.plugins.versions["fancy"] == "1.2.3"


def test_local_plugin_file_via_environment(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path, "mine", PLUGIN_ADDING_A_BACKBONE.format(name="mine", plugin="mine")
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    assert load_catalog().backbones["mine"].handle == "/models/x"


def test_plugin_that_fails_to_import_is_skipped_by_name(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "broken", "raise RuntimeError('boom at import')\n")
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert any("'broken'" in p and "boom at import" in p for p in catalog.problems)
    assert "resnet50v2" in catalog.backbones


def test_plugin_whose_hook_raises_is_skipped_by_name(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path,
        "raiser",
        """
        from zoo.catalog.hookspecs import hookimpl

        @hookimpl
        def register_backbones(registry, register):
            raise ValueError("hook exploded")
    """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert any("'raiser'" in p and "hook exploded" in p for p in catalog.problems)
    assert "efficientnet_b0" in catalog.backbones


def test_two_plugins_registering_one_name_keeps_the_first(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path, "copycat", PLUGIN_ADDING_A_BACKBONE.format(name="resnet50v2", plugin="copycat")
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert catalog.backbones["resnet50v2"].plugin == "resnet"
    assert any(
        "'copycat'" in p and "'resnet50v2'" in p and "skipped" in p for p in catalog.problems
    )


def test_registry_entry_naming_a_missing_plugin_is_reported(tmp_path, monkeypatch):
    from conftest import registry_text

    path = tmp_path / "registry.toml"
    path.write_text(registry_text("/m", name="orphan", plugin="nonexistent"))
    catalog = load_catalog(path)
    assert "orphan" not in catalog.backbones
    assert any("'orphan'" in p and "'nonexistent'" in p for p in catalog.problems)
