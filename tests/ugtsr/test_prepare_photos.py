"""scripts/prepare_photos.py: the Python package photos and Debian's mate-backgrounds nature photos.

No network: the mate photos come from a small fake ``mate-backgrounds`` .deb built here with
``dpkg-deb --build`` (tiny photos with the real file names, a copyright file, a changelog), and the
automatic sources (installed package, deb cache, ``apt-get download``) are pointed at folders of the
test. The package photos are two tiny PNGs of a fake importable package, except in the one test that
checks the real package-photo split.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_photos.py"
VERSION = "1.26.0-1~test"
EXTRA = "Sunset.jpg"  # a photo of a "newer" package that neither list has
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: MATE Backgrounds

Files: nature/*
Copyright: 2008, test
License: GPL-2+
"""
CONTROL = f"""Package: mate-backgrounds
Version: {VERSION}
Architecture: all
Maintainer: UGTSR tests <tests@example.invalid>
Description: fake mate-backgrounds for tests/ugtsr/test_prepare_photos.py
"""
MATE_TRAIN = {"mate_aqua", "mate_blinds", "mate_fresh_flower", "mate_garden", "mate_green_meadow",
              "mate_rain_drops", "mate_storm", "mate_two_wings", "mate_yellow_flower"}
MATE_VAL = {"mate_dune", "mate_lady_bird", "mate_wood"}
FAKE_PHOTOS = {"train": [("ugtsr_fake_photo_pkg", "data/a.png", "pkg_a")],
               "val": [("ugtsr_fake_photo_pkg", "data/b.png", "pkg_b")]}
needs_dpkg_deb = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                    reason="dpkg-deb (Debian's dpkg) is not on PATH: no fake .deb can be built")


def _load():
    """A fresh copy of the script's module (tests change its module-level settings)."""
    spec = importlib.util.spec_from_file_location("prepare_photos_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mate_files(pp) -> list[str]:
    return [file for entries in pp.MATE_PHOTOS.values() for file, _ in entries]


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _names(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.png")}


@pytest.fixture(scope="session")
def fake_package_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_photo_pkg")
    pkg = root / "ugtsr_fake_photo_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    rng = np.random.default_rng(1)
    for name, shape in (("a", (20, 30, 3)), ("b", (18, 26, 3))):
        cv2.imwrite(str(pkg / "data" / f"{name}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
    return root


@pytest.fixture
def pp(monkeypatch, fake_package_dir, tmp_path):
    """The script's module with the fake package photos and no way to the real mate sources."""
    module = _load()
    monkeypatch.syspath_prepend(str(fake_package_dir))
    monkeypatch.setattr(module, "PHOTOS", FAKE_PHOTOS)
    monkeypatch.setattr(module, "INSTALLED_ROOT", tmp_path / "no_installed_root")
    monkeypatch.setattr(module, "APT_GET", "ugtsr-test-no-such-apt-get")
    monkeypatch.setenv("UGTSR_DEB_CACHE", str(tmp_path / "empty_deb_cache"))
    return module


@pytest.fixture(scope="module")
def fake_deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian's dpkg) is not on PATH: no fake .deb can be built")
    pp = _load()
    root = tmp_path_factory.mktemp("fake_mate_deb")
    tree = root / "tree"
    nature = tree / pp.MATE_NATURE
    nature.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, file in enumerate([*_mate_files(pp), EXTRA]):
        img = rng.integers(0, 256, (16 + i, 24 + 2 * i, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(Path(file).suffix, img)
        assert ok
        (nature / file).write_bytes(buf.tobytes())
    doc = tree / "usr/share/doc/mate-backgrounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    (doc / "changelog.Debian.gz").write_bytes(
        gzip.compress(f"mate-backgrounds ({VERSION}) unstable; urgency=medium\n".encode()))
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(CONTROL)
    for d in [tree, *tree.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)  # dpkg-deb refuses a control folder of mode 0700 (pytest's tmp folders)
    deb = root / f"mate-backgrounds_{VERSION}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return SimpleNamespace(deb=deb, tree=tree, nature=nature, copyright=doc / "copyright")


def test_the_splits_are_fixed_lists(pp):
    real = _load()
    assert [name for _, _, name in real.PHOTOS["val"]] == ["chelsea", "coffee", "flower"]
    assert len(real.PHOTOS["train"]) == 7
    assert {name for _, name in pp.MATE_PHOTOS["train"]} == MATE_TRAIN
    assert {name for _, name in pp.MATE_PHOTOS["val"]} == MATE_VAL
    files = _mate_files(pp)
    assert len(files) == len(set(files)) == 12


@needs_dpkg_deb
def test_mate_deb(pp, fake_deb, tmp_path, capsys):
    out = tmp_path / "out"
    assert pp.main([str(out), "--mate-deb", str(fake_deb.deb)]) == 0
    err = capsys.readouterr().err
    assert _names(out / "train") == {"pkg_a"} | MATE_TRAIN
    assert _names(out / "val") == {"pkg_b"} | MATE_VAL
    assert sorted(p.name for p in out.iterdir()) == ["LICENSES", "SOURCES.json", "train", "val"]  # no staging left
    assert (out / "LICENSES" / "mate-backgrounds.copyright").read_bytes() == fake_deb.copyright.read_bytes()

    # the photo of a newer package version: reported, skipped, recorded
    assert EXTRA in err and "neither the train nor the val list" in err
    assert not any("sunset" in p.name.lower() for p in out.rglob("*"))

    doc = json.loads((out / "SOURCES.json").read_text())
    records = {r["name"]: r for r in doc["photos"]}
    assert set(records) == {"pkg_a", "pkg_b"} | MATE_TRAIN | MATE_VAL
    for split, entries in pp.MATE_PHOTOS.items():
        for file, name in entries:
            src = fake_deb.nature / file
            rec = records[name]
            assert rec["split"] == split and rec["file"] == f"{split}/{name}.png"
            assert rec["package"] == "mate-backgrounds" and rec["package_version"] == VERSION
            assert rec["path"] == f"usr/share/backgrounds/mate/nature/{file}"
            assert rec["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
            stored = cv2.imread(str(out / rec["file"]), cv2.IMREAD_UNCHANGED)
            assert stored.dtype == np.uint8 and stored.shape == (rec["height"], rec["width"], 3)
            assert np.array_equal(stored, cv2.imread(str(src), cv2.IMREAD_COLOR))  # as it is: no resizing
    assert records["pkg_a"]["source"] == "python" and records["pkg_a"]["path"] == "ugtsr_fake_photo_pkg/data/a.png"
    assert doc["skipped"] == [{"package": "mate-backgrounds", "path": f"usr/share/backgrounds/mate/nature/{EXTRA}",
                               "reason": "not in the fixed split"}]
    mate = doc["mate-backgrounds"]
    assert mate["used"] and mate["version"] == VERSION and mate["origin"]["kind"] == "deb"
    assert mate["origin"]["deb_sha256"] == hashlib.sha256(fake_deb.deb.read_bytes()).hexdigest()
    assert mate["license_file"] == "LICENSES/mate-backgrounds.copyright"


@needs_dpkg_deb
@pytest.mark.parametrize("where", ["tree", "nature"])
def test_mate_dir(pp, fake_deb, tmp_path, where):
    out = tmp_path / "out"
    path = fake_deb.tree if where == "tree" else fake_deb.nature
    assert pp.main([str(out), "--mate-dir", str(path)]) == 0
    assert _names(out / "val") == {"pkg_b"} | MATE_VAL
    mate = json.loads((out / "SOURCES.json").read_text())["mate-backgrounds"]
    assert mate["version"] == VERSION  # from the tree's changelog.Debian.gz
    assert (out / "LICENSES" / "mate-backgrounds.copyright").read_bytes() == fake_deb.copyright.read_bytes()


@needs_dpkg_deb
def test_automatic_sources_installed_then_deb_cache(pp, fake_deb, tmp_path, monkeypatch):
    monkeypatch.setattr(pp, "INSTALLED_ROOT", fake_deb.tree)
    assert pp.main([str(tmp_path / "a")]) == 0
    doc = json.loads((tmp_path / "a" / "SOURCES.json").read_text())
    assert doc["mate-backgrounds"]["origin"]["kind"] == "installed"

    monkeypatch.setattr(pp, "INSTALLED_ROOT", tmp_path / "nothing_installed")
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(fake_deb.deb, cache)
    assert pp.main([str(tmp_path / "b"), "--deb-cache", str(cache)]) == 0  # apt-get is not reachable here
    doc = json.loads((tmp_path / "b" / "SOURCES.json").read_text())
    assert doc["mate-backgrounds"]["origin"]["kind"] == "deb cache"
    assert _names(tmp_path / "b" / "train") == {"pkg_a"} | MATE_TRAIN


def test_no_source_carries_on_with_the_package_photos(pp, tmp_path, capsys):
    out = tmp_path / "out"
    assert pp.main([str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mate photos not used:")
    assert "apt-get download mate-backgrounds" in err[0] and "--mate-deb" in err[0]
    assert _names(out / "train") == {"pkg_a"} and _names(out / "val") == {"pkg_b"}
    assert not (out / "LICENSES").exists()
    assert json.loads((out / "SOURCES.json").read_text())["mate-backgrounds"]["used"] is False

    assert pp.main([str(tmp_path / "required"), "--require-mate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get download mate-backgrounds" in err[0]
    assert not (tmp_path / "required").exists()


@pytest.mark.parametrize("extra", [["--require-mate"], []])
def test_missing_deb_exits_1_with_one_line(tmp_path, extra):
    """An explicit source that does not work is an error, with or without --require-mate."""
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(SCRIPT), str(out), "--mate-deb", str(tmp_path / "missing.deb"),
                          *extra], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "missing.deb: no such file" in lines[0] and "apt-get download mate-backgrounds" in lines[0]
    assert res.stdout == "" and not out.exists()


@needs_dpkg_deb
def test_no_mate_removes_mate_photos_of_an_earlier_run(pp, fake_deb, tmp_path, capsys):
    out = tmp_path / "out"
    assert pp.main([str(out), "--mate-deb", str(fake_deb.deb)]) == 0
    capsys.readouterr()
    assert pp.main([str(out), "--no-mate"]) == 0
    assert "removed 12 mate photos" in capsys.readouterr().err
    assert _names(out / "train") == {"pkg_a"} and _names(out / "val") == {"pkg_b"}
    assert sorted(p.name for p in out.iterdir()) == ["SOURCES.json", "train", "val"]


@needs_dpkg_deb
def test_a_listed_photo_missing_from_the_package_is_reported(pp, fake_deb, tmp_path, capsys):
    nature = tmp_path / "nature"
    shutil.copytree(fake_deb.nature, nature)
    (nature / "Storm.jpg").unlink()
    out = tmp_path / "out"
    assert pp.main([str(out), "--mate-dir", str(nature)]) == 0
    assert "skip mate_storm: Storm.jpg is not in this mate-backgrounds" in capsys.readouterr().err
    assert _names(out / "train") == {"pkg_a"} | MATE_TRAIN - {"mate_storm"}
    doc = json.loads((out / "SOURCES.json").read_text())
    assert {"package": "mate-backgrounds", "path": "usr/share/backgrounds/mate/nature/Storm.jpg",
            "reason": "missing"} in doc["skipped"]
    assert doc["mate-backgrounds"]["license_file"] is None  # a bare nature folder has no copyright file


@needs_dpkg_deb
@pytest.mark.parametrize("failure", ["write", "interrupt", "corrupt"])
def test_a_failed_run_leaves_the_output_as_it_was(pp, fake_deb, tmp_path, monkeypatch, capsys, failure):
    out = tmp_path / "out"
    assert pp.main([str(out), "--mate-deb", str(fake_deb.deb)]) == 0
    before = _tree(out)
    capsys.readouterr()
    args = [str(out), "--mate-deb", str(fake_deb.deb)]
    if failure == "corrupt":
        nature = tmp_path / "nature"
        shutil.copytree(fake_deb.nature, nature)
        (nature / "Wood.jpg").write_bytes(b"not a JPEG")
        args = [str(out), "--mate-dir", str(nature)]
    else:
        real_write, calls = pp.write_bytes_atomic, []

        def failing_write(path, data):
            calls.append(path)
            if len(calls) == 5:
                if failure == "interrupt":
                    raise KeyboardInterrupt
                raise pp.UGTSRError(f"{path}: cannot write (No space left on device)")
            return real_write(path, data)

        monkeypatch.setattr(pp, "write_bytes_atomic", failing_write)
    if failure == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            pp.main(args)
    else:
        assert pp.main(args) == 1
        err = [ln for ln in capsys.readouterr().err.strip().splitlines()
               if not ln.startswith(f"mate: skip {EXTRA}")]  # the fake package's extra photo
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert _tree(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["LICENSES", "SOURCES.json", "train", "val"]


def test_the_python_api_default_is_the_package_photos_only(tmp_path, monkeypatch):
    """What tests/runtime/test_default_model.py relies on: ``collect(out)`` gives exactly the package
    photos (chelsea, coffee, flower held out) and does not even look for the mate photos."""
    for mod in ("skimage", "sklearn", "matplotlib"):
        pytest.importorskip(mod, reason=f"the package photos need {mod} (extra 'train')")
    pp = _load()

    def no_mate(*args, **kwargs):
        raise AssertionError("collect() looked for the mate photos")

    monkeypatch.setattr(pp, "find_mate", no_mate)
    out = tmp_path / "out"
    found = pp.collect(out)
    assert found == {"train": ["astronaut", "hubble_deep_field", "motorcycle_left", "motorcycle_right", "rocket",
                               "china", "grace_hopper"],
                     "val": ["chelsea", "coffee", "flower"]}
    assert _names(out / "val") == {"chelsea", "coffee", "flower"}
    assert not list(out.rglob("mate_*")) and not (out / "LICENSES").exists()
    doc = json.loads((out / "SOURCES.json").read_text())
    assert {r["name"] for r in doc["photos"]} == set(found["train"]) | set(found["val"])
    assert os.listdir(out) and sorted(os.listdir(out)) == ["SOURCES.json", "train", "val"]
