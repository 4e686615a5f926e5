"""Every ``carspatial`` subcommand: user errors are one ERROR line and exit 2, internal failures
exit 1 without a traceback (unless -v), no library log noise, --version."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_carspatial import cli
from napari_carspatial.model import SampleError

ROOT = Path(__file__).resolve().parents[2]


def _fill(parser, tmp_path: Path) -> list[str]:
    """Arguments that parse: positionals get paths, required options a path, nested
    subcommands (``project init ...``) their first choice."""
    argv = []
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            first = next(iter(act.choices))
            argv += [first, *_fill(act.choices[first], tmp_path)]
        elif act.option_strings:
            if act.required:
                argv += [act.option_strings[0], str(tmp_path / "out")]
        elif act.dest != "help":
            n = 2 if act.nargs == 2 else 1
            argv += [str(tmp_path / f"missing-{act.dest}")] * n
    return argv


def _argv(name: str, tmp_path: Path) -> list[str]:
    """A parseable command line for subcommand ``name`` (required arguments filled with paths)."""
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return [name, *_fill(sub, tmp_path)]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


COMMANDS = sorted(cli.commands())


def test_every_command_is_covered():
    assert {"analyze", "batch", "quantify", "info", "open", "demo", "write-demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_internal_failure_is_one_line_and_exit_1(name, tmp_path, monkeypatch, capsys):
    cmd = cli.commands()[name]

    def boom(args):
        raise RuntimeError("something broke\nover two lines")

    monkeypatch.setattr(cmd, "run", boom)
    assert cli.main(_argv(name, tmp_path)) == cli.EXIT_INTERNAL
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith(f"ERROR internal error in `carspatial {name}`: RuntimeError: something broke over two")
    assert "-v" in err[0] and "Traceback" not in err[0]
    # with -v the traceback is there
    assert cli.main(["-v", *_argv(name, tmp_path)]) == cli.EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("error,expected", [
    (SampleError("the mask has 3 ids that are not in the table.", path="/data/m.tif"),
     "ERROR /data/m.tif: the mask has 3 ids that are not in the table."),
    (FileNotFoundError(2, "No such file or directory", "/data/gone.h5ad"), "ERROR /data/gone.h5ad: No such file"),
    (ModuleNotFoundError("No module named 'distributed'", name="distributed"),
     "ERROR this command needs the optional package 'distributed'"),
])
def test_user_errors_are_one_line_and_exit_2(name, error, expected, tmp_path, monkeypatch, capsys):
    cmd = cli.commands()[name]

    def fail(args):
        raise error

    monkeypatch.setattr(cmd, "run", fail)
    assert cli.main(_argv(name, tmp_path)) == cli.EXIT_USER
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(expected), err


@pytest.mark.parametrize("name", ["info", "analyze", "quantify", "batch"])
def test_missing_input_names_the_file(name, tmp_path, capsys):
    argv = _argv(name, tmp_path)
    assert cli.main(argv) == cli.EXIT_USER
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("ERROR ") and str(tmp_path / "missing-") in err[0], err


def test_bad_arguments_and_outputs_into_a_file(tmp_path, capsys):
    assert cli.main(["demo", "--size", "0"]) == cli.EXIT_USER
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("ERROR carspatial demo: argument --size")
    assert cli.main(["analyze"]) == cli.EXIT_USER  # missing arguments
    assert _lines(capsys.readouterr().err)[0].startswith("ERROR carspatial analyze:")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["write-demo", str(blocker / "out"), "--size", "64"]) == cli.EXIT_USER
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("ERROR ") and "a-file" in err[0], err


def test_version(capsys):
    from napari_carspatial import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"carspatial {__version__}"


def test_quantify_prints_no_library_log_lines(cytomapper_dir, tmp_path):
    """distributed's INFO lines (cluster start, workers) used to drown the progress bar."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("DASK_LOGGING__DISTRIBUTED", None)
    r = subprocess.run([sys.executable, "-m", "napari_carspatial.cli", "quantify",
                        str(cytomapper_dir / "images" / "G01_imc.tiff"), str(cytomapper_dir / "masks" / "G01_mask.tiff"),
                        "-o", str(tmp_path / "t.h5ad")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stderr)
    noisy = [ln for ln in lines if ln.startswith(("INFO", "DEBUG")) and "napari_carspatial" not in ln
             and not ln.startswith(("INFO quantifying", "INFO wrote"))]
    assert not [ln for ln in lines if "distributed." in ln or "Scheduler" in ln or "Worker" in ln], lines
    assert not noisy, lines
    assert (tmp_path / "t.h5ad").is_file()
