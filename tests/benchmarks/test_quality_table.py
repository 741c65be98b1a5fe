"""scripts/quality_table.py: the model card's table from benchmarks.quality result files."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("quality_table", ROOT / "scripts" / "quality_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _result(path: Path, pipeline: str, model_psnr: float) -> Path:
    mean = [{"method": "HR (reference)", "images": 2, "psnr_y": None, "ssim_y": None, "niqe": 3.0},
            {"method": "bicubic", "images": 2, "psnr_y": 25.0, "ssim_y": 0.70, "niqe": 9.0},
            {"method": "lanczos", "images": 2, "psnr_y": 25.1, "ssim_y": 0.69, "niqe": 9.5},
            {"method": "m", "images": 2, "psnr_y": model_psnr, "ssim_y": 0.72, "niqe": 7.0}]
    methods = [{"name": "bicubic", "kind": "baseline"}, {"name": "lanczos", "kind": "baseline"},
               {"name": "m", "kind": "model"}]
    path.write_text(json.dumps({"benchmark": "quality", "settings": {"pipeline": pipeline, "scale": 4},
                                "methods": methods, "mean": mean, "evaluated": 2}))
    return path


def test_table_and_margins(tmp_path, capsys):
    a = _result(tmp_path / "a.json", "bsrgan", 26.0)
    b = _result(tmp_path / "b.json", "bicubic", 24.5)
    assert _script().main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| bsrgan x4 (2) | 25.00 / 0.7000 / 9.00 | 25.10 / 0.6900 / 9.50 | **26.00** / **0.7200** / **7.00** |" in out
    assert "| bicubic x4 (2) | 25.00 / 0.7000 / 9.00 | **25.10** /" in out
    assert "| bsrgan | m | +1.00 dB | +0.0200 | -2.00 |" in out
    assert "| bicubic | m | -0.50 dB | +0.0200 | -2.00 |" in out


def test_bad_file_is_one_line(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert _script().main([str(tmp_path / "x.json")]) == 2
    assert _script().main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a benchmarks.quality result file" in err[0] and "missing.json" in err[1]
