"""One exception hierarchy (otsentry.errors), mapped to one-line CLI errors in one place (otsentry.cli)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest
from click.testing import CliRunner

import otsentry
from otsentry.cli import main
from otsentry.errors import InputError, OtsentryError, ServiceError


def _exception_classes():
    for info in pkgutil.walk_packages(otsentry.__path__, "otsentry."):
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == info.name:
                yield f"{info.name}.{name}", cls


def test_every_exception_of_otsentry_is_an_otsentry_error():
    classes = dict(_exception_classes())
    assert len(classes) > 15  # the walk found them
    outside = [name for name, cls in classes.items()
               if not issubclass(cls, OtsentryError) and not issubclass(cls, click.ClickException)]
    assert not outside, outside


@pytest.mark.parametrize("name, base", [
    ("otsentry.collectors.types.CaptureError", InputError), ("otsentry.config.ConfigError", InputError),
    ("otsentry.detectors.bundle.BundleError", InputError), ("otsentry.records.SchemaError", InputError),
    ("otsentry.stream.transport.TransportError", ServiceError), ("otsentry.alerts.elastic.ElasticError", ServiceError),
    ("otsentry.alerts.kibana.KibanaError", ServiceError),
])
def test_user_facing_categories(name, base):
    module, _, attr = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), attr), base)


def test_builtin_bases_are_kept_for_callers_that_catch_them():
    from otsentry.config import ConfigError
    from otsentry.stream.transport import TransportError

    assert issubclass(ConfigError, ValueError) and issubclass(TransportError, RuntimeError)


@pytest.mark.parametrize("args, content, expected", [
    (["inspect"], b"not a capture at all", "not a pcap"),
    (["run", "--model"], b"junk", "model"),
])
def test_a_library_error_is_one_line_exit_2(tmp_path, args, content, expected):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    capture = tmp_path / "c.pcap"
    capture.write_bytes(b"")
    argv = args + [str(bad)] + ([str(capture)] if args[0] == "run" else [])
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0].lower(), result.output
    assert "Traceback" not in result.output


def test_an_error_from_a_service_is_one_line(tmp_path):
    """An unreachable Kibana (a closed port on loopback) ends as one line, through the same mapping."""
    result = CliRunner().invoke(main, ["kibana", "import", "--kibana", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
