"""scripts/gpu_train_v2.sh (issue 14's GPU training protocol) runs end to end: SMOKE=1 runs every
step -- prior, stage I x4/x2, stage II x4/x2 and the four Table V variants -- with 2 iterations on
the CPU, so the script a lent GPU would run cannot rot unnoticed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[2]
STEPS = ["prior", "s1_x4", "s1_x2", "s2_x4", "s2_x2", "t5_baseline", "t5_udl", "t5_topk", "t5_align"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_v2_protocol_smoke(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        for i in range(2):
            img = cv2.GaussianBlur((rng.random((96, 96, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
            cv2.imwrite(str(tmp_path / "photos" / split / f"p{i}.png"), img)
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"),
           "DATA": str(tmp_path / "photos"), "PY": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train_v2.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    log = (tmp_path / "out" / "v2" / "session.log").read_text()
    assert proc.returncode == 0, log + proc.stderr
    for step in STEPS:
        assert f"step {step} rc=0" in log, log
        assert (tmp_path / "out" / "v2" / f"{step}.pt").is_file(), step
    import ugtsr
    base = ugtsr.load_checkpoint(tmp_path / "out" / "v2" / "t5_baseline.pt").config
    full = ugtsr.load_checkpoint(tmp_path / "out" / "v2" / "s2_x4.pt").config
    assert (base.matching, base.skip_fusion) == ("nearest", "add")
    assert (full.matching, full.skip_fusion, full.latent_scale) == ("topk", "align_attention", 4)
    assert ugtsr.load_checkpoint(tmp_path / "out" / "v2" / "s2_x2.pt").config.scale == 2
    # the CPU evaluation of the run: Table V from the protocol's checkpoints
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "table_v.py"), str(tmp_path / "out" / "v2"),
                            "--data", str(tmp_path / "photos" / "val"), "--draws", "1", "--threads", "1",
                            "--out-dir", str(tmp_path / "results")], capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stdout + table.stderr
    md = (tmp_path / "results" / "table_v_realesrgan_x4.md").read_text()
    assert md.count("\n| ") == 8 and "all three" in md and "benchmarks.accuracy" in md  # header, rule, bicubic, 5 variants
