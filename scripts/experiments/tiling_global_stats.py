"""Tiled vs whole-image output of an untrained model, with each tile's own GroupNorm/MDTA statistics
and with the statistics of the whole image (what tiled-VAE tools do).

    python scripts/experiments/tiling_global_stats.py tiny    # astronaut crop, 128x128 LR

Prints PSNR against whole-image inference for tile/pad settings. Source of the README's 43 dB
(tile 64, pad 32) and 85 dB (tile 48, pad 48) with whole-image statistics. The model's norm and
MDTA forwards are patched here; nothing in the package changes.
"""
import math
import sys

import torch

sys.path.insert(0, __import__('pathlib').Path(__file__).resolve().parents[2].as_posix())
import cv2
import torch.nn.functional as F
from skimage import data

from tests.export.conftest import tiny_model, ugtsr_x4_model

torch.set_num_threads(2)
name = sys.argv[1]
model = tiny_model() if name=='tiny' else ugtsr_x4_model()
img = data.astronaut()[:256,:256] if name=='tiny' else data.astronaut()[100:292,100:292]
H = img.shape[0]//2
lq = torch.from_numpy(cv2.resize(img,(H,H),interpolation=cv2.INTER_AREA)).permute(2,0,1)[None].float()/255
# stats hooks
from ugtsr.attention import MDTA

gns = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
mdtas = [m for m in model.modules() if isinstance(m, MDTA)]
rec = {}
mode = {'m': 'normal'}
def gn_fwd(self, x):
    if mode['m']=='normal': return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
    b,c,h,w = x.shape; g=self.num_groups
    xr = x.reshape(b,g,-1)
    if mode['m']=='record':
        mean = xr.mean(-1, keepdim=True); var = xr.var(-1, unbiased=False, keepdim=True)
        rec[id(self)] = (mean, var)
    mean, var = rec[id(self)]
    y = ((xr-mean)/torch.sqrt(var+self.eps)).reshape(b,c,h,w)
    return y*self.weight[None,:,None,None]+self.bias[None,:,None,None]
import types

for m in gns: m.forward = types.MethodType(gn_fwd, m)
orig_mdta = MDTA.forward
def mdta_fwd(self, x):
    b,c,h,w = x.shape
    q,k,v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
    v = v.reshape(b,self.heads,c//self.heads,h*w)
    if mode['m'] in ('normal','record'):
        q = F.normalize(q.reshape(b,self.heads,c//self.heads,h*w), dim=-1); k = F.normalize(k.reshape(b,self.heads,c//self.heads,h*w), dim=-1)
        attn = ((q@k.transpose(-2,-1))*self.temperature).softmax(-1)
        if mode['m']=='record': rec[id(self)] = attn
    else: attn = rec[id(self)]
    return self.proj((attn@v).reshape(b,c,h,w))
for m in mdtas: m.forward = types.MethodType(mdta_fwd, m)
def run(x):
    with torch.no_grad(): return model(x).sr.clamp(0,1)
def psnr(a,b): return 10*math.log10(1/((a-b)**2).mean().item())
full = run(lq)
def tiled(x, tile, pad, s=4):
    _,_,h,w = x.shape; out = torch.zeros(1,3,h*s,w*s); torch.zeros(1,1,h*s,w*s)
    for y0 in range(0,h,tile):
        for x0 in range(0,w,tile):
            ya,yb = max(0,y0-pad), min(h,y0+tile+pad); xa,xb=max(0,x0-pad),min(w,x0+tile+pad)
            o = run(x[:,:,ya:yb,xa:xb])
            cy0,cx0 = (y0-ya)*s,(x0-xa)*s
            th,tw = (min(h,y0+tile)-y0)*s,(min(w,x0+tile)-x0)*s
            out[:,:,y0*s:y0*s+th,x0*s:x0*s+tw] = o[:,:,cy0:cy0+th,cx0:cx0+tw]
    return out
for tile,pad in [(64,16),(64,32),(48,48)]:
    mode['m']='normal'; t0 = tiled(lq,tile,pad)
    mode['m']='record'; run(lq); mode['m']='apply'; t1 = tiled(lq,tile,pad)
    mode['m']='record'; run(F.interpolate(lq,scale_factor=0.5,mode='area')); mode['m']='apply'; t2 = tiled(lq,tile,pad)
    print(name, tile, pad, 'own-stats %.1f'%psnr(full,t0), 'global-exact %.1f'%psnr(full,t1), 'global-from-x0.5 %.1f'%psnr(full,t2))
