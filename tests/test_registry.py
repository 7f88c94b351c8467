from pathlib import Path

import pytest
from conftest import SHIPPED_BACKBONES, registry_text
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.catalog.registry import default_registry_path, load_registry, parse_registry
from zoo.errors import RegistryError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_shipped_registry_has_the_classic_backbones():
    registry = load_registry(default_registry_path())
    assert set(registry) >= SHIPPED_BACKBONES
    resnet = registry["resnet50v2"].fields
    assert resnet["handle"].startswith(
        "https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/"
    )
    assert resnet["feature_dim"] == 2048 and resnet["input_size"] == [224, 224]


def test_valid_entry_round_trips(tmp_path):
    registry = load_registry(write(tmp_path, registry_text("/models/tiny", params_m=1.5)))
    assert registry["tiny"].fields["params_m"] == 1.5
    assert registry["tiny"].plugin == "hub"


def test_unknown_key_names_backbone_and_field(tmp_path):
    message = error_for(tmp_path, registry_text("/m", colour="blue"))
    assert "'tiny'" in message and "'colour'" in message


def test_missing_field_names_backbone_and_field(tmp_path):
    text = registry_text("/m").replace("feature_dim = 8\n", "")
    message = error_for(tmp_path, text)
    assert "'tiny'" in message and "missing field 'feature_dim'" in message


@pytest.mark.parametrize(
    "field, value",
    [
        ("feature_dim", "big"),
        ("input_size", [224]),
        ("input_range", ["a", "b"]),
        ("params_m", True),
        ("pretrained", "yes"),
        ("feature_dim", -3),
        ("interpolation", "cubic"),
        ("channel_order", "rgb"),
        ("mean", [1.0, 2.0]),
        ("crop_fraction", "most"),
    ],
)
def test_wrong_type_names_backbone_and_field(tmp_path, field, value):
    message = error_for(tmp_path, registry_text("/m", **{field: value}))
    assert "'tiny'" in message and f"'{field}'" in message and "must be" in message


def test_duplicate_name_names_both_lines(tmp_path):
    message = error_for(tmp_path, registry_text("/m") + "\n" + registry_text("/n"))
    assert "'tiny'" in message and "defined twice" in message and "lines 1 and" in message


def test_invalid_toml_gives_line_and_column(tmp_path):
    message = error_for(tmp_path, '[backbones.tiny]\nplugin = "resnet\n')
    assert "invalid TOML" in message and "line 2" in message and "column" in message


def test_unsupported_handle_form(tmp_path):
    message = error_for(tmp_path, registry_text("ftp://example.org/model"))
    assert "unsupported handle" in message and "'handle'" in message


def test_bad_name_and_empty_range(tmp_path):
    assert "lowercase" in error_for(tmp_path, registry_text("/m", name="Big-Model"))
    text = registry_text("/m").replace("input_range = [0.0, 1.0]", "input_range = [1.0, 1.0]")
    assert "low < high" in error_for(tmp_path, text)


def test_missing_registry_file(tmp_path):
    with pytest.raises(RegistryError, match="cannot read the registry"):
        load_registry(tmp_path / "nope.toml")


def test_registry_strings_are_never_evaluated(tmp_path):
    # A handle that looks like code stays an inert string.
    handle = "/__import__('os').system('touch pwned')"
    registry = load_registry(write(tmp_path, registry_text(handle)))
    assert registry["tiny"].fields["handle"] == handle
    assert not Path("pwned").exists()


toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5000)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["plugin", "handle", "input_size", "input_range", "feature_dim", "params_m", "paper", "bogus"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=10) | st.just("backbones"),
        st.dictionaries(
            st.text(max_size=10),
            st.dictionaries(field_names, toml_values, max_size=8) | toml_values,
            max_size=3,
        )
        | toml_values,
        max_size=3,
    )
)
def test_random_documents_are_accepted_or_rejected_cleanly(document):
    """Whatever the document, the loader answers with entries or a RegistryError, nothing else."""
    try:
        entries = parse_registry(document, Path("random.toml"))
    except RegistryError as error:
        assert "\n" not in str(error)
    else:
        for entry in entries.values():
            assert entry.fields["feature_dim"] > 0


# Lines a registry might hold, well- and ill-formed, to assemble into whole files.
registry_lines = st.sampled_from(
    [
        "[backbones.tiny]",
        "[backbones.Tiny]",
        "[backbones]",
        "[[backbones.tiny]]",
        "[other]",
        'plugin = "resnet"',
        'handle = "/models/tiny"',
        'handle = "ftp://example.org/m"',
        "input_size = [32, 32]",
        "input_range = [0.0, 1.0]",
        "input_range = [1, 0]",
        "feature_dim = 8",
        "feature_dim = -1",
        "params_m = 1.5",
        'paper = """two\nlines"""',
        "pretrained = true",
        "when = 1979-05-27T07:32:00Z",
        'fallback_handles = ["zoo:tiny"]',
        "table = {a = 1}",
        "backbones = 3",
        "= nothing",
        'plugin = "unterminated',
        "x = " + "[" * 2000,
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(registry_lines | st.text(max_size=16), max_size=12).map(
        lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")
    )
    | st.binary(max_size=48)
)
def test_random_registry_files_are_accepted_or_rejected_cleanly(tmp_path_factory, content):
    """Whatever bytes the file holds, load_registry gives entries or a one-line RegistryError."""
    path = tmp_path_factory.getbasetemp() / "random-registry.toml"
    path.write_bytes(content)
    try:
        entries = load_registry(path)
    except RegistryError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{path}: ")
    else:
        assert all(entry.fields["feature_dim"] > 0 for entry in entries.values())
