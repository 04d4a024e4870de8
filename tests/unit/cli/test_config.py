"""Typed YAML config: defaults, coercion, and one-line errors naming the key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.config import ConfigError, load_config


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg["collector"].server_ports == frozenset({502})


def test_values_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("collector:\n  server_ports: [502, 5020]\n  pairing_timeout_s: 2\n")
    cfg = load_config(path)["collector"]
    assert cfg.server_ports == frozenset({502, 5020})
    assert cfg.pairing_timeout_s == 2.0 and isinstance(cfg.pairing_timeout_s, float)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("collector:\n  server_port: [502]\n", "unknown key 'server_port'"),
        ("collecter: {}\n", "unknown section 'collecter'"),
        ("collector:\n  pairing_timeout_s: soon\n", "collector.pairing_timeout_s: expected a number"),
        ("collector:\n  fast_path: 1\n", "collector.fast_path: expected true or false"),
        ("collector:\n  server_ports: [abc]\n", "collector.server_ports: expected a list of integers"),
        ("- just\n- a list\n", "expected a mapping"),
        ("collector: [1, 2]\n", "collector: expected a mapping"),
        ("collector: {a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_line_naming_the_problem(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_config_or_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError:
        pass
