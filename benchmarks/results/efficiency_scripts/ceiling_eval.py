import sys, cv2, numpy as np, torch
from pathlib import Path
sys.path.insert(0, "/work/main")
from ugtsr import load_model
from ugtsr.metrics import psnr
torch.set_num_threads(2)
crop = 512
for ck in sys.argv[1:]:
    prior = load_model(ck).eval()
    vals = []
    for path in sorted(Path("/work/main/data/photos/val").glob("*.png")):
        hr = cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255
        h, w = hr.shape[:2]; y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        hr = np.ascontiguousarray(hr[y:y + crop, x:x + crop])
        hr = hr[: hr.shape[0] // 8 * 8, : hr.shape[1] // 8 * 8]
        with torch.no_grad():
            rec = prior(torch.from_numpy(hr.copy()).permute(2, 0, 1)[None]).sr.clamp(0, 1)
        v = psnr(rec[0].permute(1, 2, 0).numpy(), hr, crop_border=4); vals.append(v)
        print(f"  {path.stem:16s} {v:.2f} dB")
    print(ck, "mean", round(float(np.mean(vals)), 2))
