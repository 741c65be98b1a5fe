"""docs/TRAINING.md works as written: every command of its bash blocks runs (issue 11 item 14).

The commands run in a scratch folder (``runtime/`` linked in, for the shipped checkpoint) with
three numbers made small so the test is fast: ``--iters 2``, ``--batch-size 1``, ``--patch-size 64``.
Everything else -- paths, flags, the order of the stages -- is the document's text. Each command is
run in-process through its CLI's ``main(argv)`` (``python -m M`` -> ``M.main``, ``python
scripts/S.py`` -> that script's ``main``): the same code path without a Python start per command.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "TRAINING.md"
SMALL = {"--iters": "2", "--batch-size": "1", "--patch-size": "64"}


def _commands(text: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line))
    return commands


def _shrink(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in SMALL:
            out[i + 1] = SMALL[arg]
    return out


def _main_of(argv: list[str]):
    """``(main, args)`` of ``python -m MODULE ARGS`` or ``python scripts/NAME.py ARGS``."""
    assert argv[0] == "python", argv
    if argv[1] == "-m":
        module = importlib.import_module(argv[2])
        main = getattr(module, "main", None) or importlib.import_module(f"{argv[2]}.cli").main
        return main, argv[3:]
    spec = importlib.util.spec_from_file_location(Path(argv[1]).stem, ROOT / argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main, argv[2:]


def test_the_documented_commands_are_what_the_test_runs():
    commands = _commands(DOC.read_text())
    assert [c[:3] for c in commands[:2]] == [["python", "scripts/prepare_photos.py", "data/photos"],
                                             ["python", "-m", "ugtsr.train"]]
    stages = [c[c.index("--stage") + 1] for c in commands if "--stage" in c]
    assert stages == ["prior", "uncertainty", "sr", "sr"]
    assert all("--perceptual-weight" in c for c in commands if "ugtsr.train" in c)  # no VGG weights needed


def test_training_recipe_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "runtime").symlink_to(ROOT / "runtime", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for argv in _commands(DOC.read_text()):  # tests/conftest.py restores torch's thread count
        main, args = _main_of(_shrink(argv))
        if "ugtsr.train" in argv:
            args += ["--threads", "1", "--quiet", "--no-tensorboard"]
        assert main(args) == 0, argv
    val = sorted(p.name for p in (tmp_path / "data" / "photos" / "val").iterdir())
    assert val
    for run in ("prior", "s1", "s2", "finetune"):
        assert (tmp_path / "runs" / run / "final.pt").is_file(), run
    assert len(list((tmp_path / "results").iterdir())) == len(val)
