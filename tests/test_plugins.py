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
    assert catalog.backbones["resnet50v2"].plugin == "hub"
    assert catalog.backbones["resnet50v2"].family == "resnet_v2"
    assert {"hub", "efficientnet_lite", "scratch"} <= set(catalog.plugins.versions)


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
    assert catalog.backbones["resnet50v2"].plugin == "hub"
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


LLM_STYLE_PLUGIN = """
import zoo

@zoo.hookimpl
def register_backbones(register):
    register(zoo.Backbone(name="mini", handle={handle!r}, input_size=(32, 32),
                          feature_dim=8, plugin="whatever-it-says"))
"""


def test_llm_style_plugin_importing_only_zoo_is_listed_pulled_and_run(
    tmp_path, monkeypatch, tiny_savedmodel, tiny_images, capsys
):
    import json

    import pytest

    from zoo.cli import main

    path = write_plugin(
        tmp_path, "mini_plugin", LLM_STYLE_PLUGIN.format(handle=str(tiny_savedmodel))
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    for args in (["list", "--json"], ["pull", "mini"], ["run", "mini", "--data", str(tiny_images)]):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code in (0, None), (args, capsys.readouterr().err)
        if args[0] == "list":
            rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
            # One name per plugin: the backbone's plugin is the plugin that registered it.
            assert rows["mini"]["plugin"] == "mini_plugin"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["plugins", "--json"])
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "mini_plugin" in names


def test_plugin_raising_halfway_through_import_is_reported_every_time(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path,
        "halfway",
        LLM_STYLE_PLUGIN.format(handle="/models/x") + "\nimport zoo\nzoo.no_such_thing\n",
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    from zoo.catalog import plugins

    for _ in range(2):  # a second load in the process must not take the half-run module for loaded
        plugins._loaded.clear()
        catalog = load_catalog()
        assert "mini" not in catalog.backbones
        assert any("'halfway'" in p and "AttributeError" in p for p in catalog.problems)
        assert "halfway" not in catalog.plugins.versions


def test_plugin_calling_sys_exit_is_reported_and_skipped(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "quitter", "import sys\nsys.exit(3)\n")
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert any("'quitter'" in p and "sys.exit(3)" in p for p in catalog.problems)
    assert "resnet50v2" in catalog.backbones


def test_misspelt_hook_is_reported(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path,
        "typo",
        """
        import zoo

        @zoo.hookimpl
        def register_backbone(register):
            pass
        """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert any(
        "'typo'" in p and "register_backbone is not a zoo hook" in p for p in catalog.problems
    )


def test_plugin_ships_its_own_registry_entries(tmp_path, monkeypatch, tiny_savedmodel):
    (tmp_path / "squeeze.toml").write_text(
        f"""
[backbones.squeeze]
handle = "{tiny_savedmodel}"
input_size = [32, 32]
channel_order = "BGR"
mean = [103.94, 116.78, 123.68]
std = [1.0, 1.0, 1.0]
feature_dim = 8
"""
    )
    path = write_plugin(
        tmp_path,
        "squeezenet",
        """
        from pathlib import Path

        import zoo

        @zoo.hookimpl
        def registry_files():
            return [Path(__file__).with_name("squeeze.toml")]

        @zoo.hookimpl
        def register_backbones(registry, register):
            for entry in registry.for_plugin("squeezenet"):
                register(zoo.Backbone.from_entry(entry))
        """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    assert catalog.problems == []
    squeeze = catalog.get("squeeze")
    assert squeeze.plugin == "squeezenet" and squeeze.channel_order == "BGR"
    assert squeeze.preprocessing.mean == (103.94, 116.78, 123.68)


def test_plugin_registry_errors_are_one_line_and_skip_only_that_plugin(tmp_path, monkeypatch):
    (tmp_path / "bad.toml").write_text(
        '[backbones.bad]\nhandle = "/m"\ninput_size = [32, 32]\nfeature_dim = 8\nstd = [1, 1, 1]\n'
    )
    path = write_plugin(
        tmp_path,
        "badtoml",
        """
        from pathlib import Path

        import zoo

        @zoo.hookimpl
        def registry_files():
            return [Path(__file__).with_name("bad.toml")]
        """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    catalog = load_catalog()
    (problem,) = [p for p in catalog.problems if "'badtoml'" in p]
    assert "bad.toml" in problem and "'bad'" in problem and "'mean' and 'std'" in problem
    assert "\n" not in problem
    assert "resnet50v2" in catalog.backbones


def test_run_finished_hook_sees_the_stored_run_and_a_failing_tracker_is_a_warning(
    tmp_path, monkeypatch, tiny_registry, tiny_images
):
    import zoo
    from zoo.reporting import Reporter

    seen = tmp_path / "seen.txt"
    tracker = write_plugin(
        tmp_path,
        "tracker",
        f"""
        import zoo

        @zoo.hookimpl
        def run_finished(run):
            with open({str(seen)!r}, "a") as out:
                out.write(f"{{run['id']}} {{run['backbone']}} {{run['metrics']['test_images']}}\\n")
        """,
    )
    broken = write_plugin(
        tmp_path,
        "broken_tracker",
        """
        import zoo

        @zoo.hookimpl
        def run_finished(run):
            raise ConnectionError("tracking server down")
        """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", f"{tracker}:{broken}")

    class Warnings(Reporter):
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

    reporter = Warnings()
    (result,) = zoo.run(["tiny"], data=tiny_images, epochs=1, reporter=reporter).results
    assert result.ok and result.run_id == 1
    assert seen.read_text() == "1 tiny 15\n"
    assert any(
        "'broken_tracker'" in line and "tracking server down" in line for line in reporter.lines
    )
