import json
import subprocess
import sys

import pytest
from conftest import run_main
from typer.testing import CliRunner

from zoo.cli import app, main

runner = CliRunner()


def test_list_shows_every_backbone():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in (
        "resnet50v2",
        "efficientnet_b0",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "scratch_cnn",
    ):
        assert name in result.stdout


def test_list_json_parses_and_carries_facts():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["resnet50v2"]["feature_dim"] == 2048
    assert rows["resnet50v2"]["ready"] is False  # nothing downloaded in this fresh home
    assert rows["scratch_cnn"]["ready"] is True
    assert rows["efficientnet_lite0"]["ready"] is True  # built offline from packaged weights


def test_show_json_one_backbone():
    result = runner.invoke(app, ["show", "efficientnet_b0", "--json"])
    facts = json.loads(result.stdout)
    assert facts["input_size"] == [224, 224] and facts["imagenet_top1"] == pytest.approx(77.1)


def test_plugins_lists_builtins_with_hooks():
    result = runner.invoke(app, ["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hub"]["version"] == "built-in"
    assert "register_backbones" in rows["hub"]["hooks"]


def test_unknown_backbone_is_one_line_with_close_matches_and_exit_2(capsys):
    code, _, err = run_main(["show", "resnet50"], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "unknown backbone 'resnet50'" in err and "resnet50v2" in err
    assert "Traceback" not in err


def test_broken_registry_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[backbones.x]\nplugin = \n")
    code, _, err = run_main(["--registry", str(bad), "list"], capsys)
    assert code == 2 and "invalid TOML" in err and "line 2" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    from zoo.errors import UsageError

    with pytest.raises(UsageError):
        main(["--debug", "show", "nope"])


def test_fast_commands_do_not_import_tensorflow():
    """Nor NumPy: with the TF Hub catalogue `zoo list` has 90 rows and must stay instant."""
    code = (
        "import sys; from zoo.cli import main\n"
        "for args in (['list', '--json'], ['list', '--family', 'mobilenet', '--sort', 'top1']):\n"
        "    try:\n        main(args)\n    except SystemExit: pass\n"
        "assert 'tensorflow' not in sys.modules, 'list imported tensorflow'\n"
        "assert 'numpy' not in sys.modules, 'list imported numpy'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("args", "code", "stream"), [(["list", "--json"], 0, "stdout"), (["show", "nope"], 2, "stderr")]
)
def test_the_zoo_command_flushes_its_output_and_keeps_its_exit_code(args, code, stream):
    """`python -m zoo` exits without the interpreter's teardown: nothing printed may be lost."""
    done = subprocess.run(
        [sys.executable, "-m", "zoo", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    if stream == "stdout":
        assert {backbone["name"] for backbone in json.loads(done.stdout)} >= {"efficientnet_lite0"}
    else:
        assert done.stderr.startswith("error: unknown backbone 'nope'")


def test_plugin_can_add_a_command(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "greeter.py"
    plugin.write_text(
        "from zoo.catalog.hookspecs import hookimpl\n\n"
        "@hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command()\n"
        "    def hello():\n"
        "        print('hello from a plugin')\n"
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    code, out, _ = run_main(["hello"], capsys)
    assert code == 0 and "hello from a plugin" in out
