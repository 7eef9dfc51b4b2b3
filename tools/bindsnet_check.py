#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The twin side by side with the reference (SpikingGrid on BindsNET 0.2.6).

Makes Poisson input trains with BindsNET's own encoder, runs them through the
twin with mead-twin-dump, then builds SpikingGrid's Net with the preset's
configuration, puts the twin's network into it (its three weight matrices,
the pruned synapses as masks) and runs the same trains: per sample
train(learn), run(steps), reset_state_variables(), as SpikingGrid presents
one.  Prints each sample's spike counts, the first raster mismatch and the
final weights' differences; exits 1 on any raster mismatch or a pathway whose
max |w_ref - w_twin| / max |w_twin| exceeds 1e-5.

Inputs: each sample a random 6x6 rate image (0..200 Hz, ~40% of the pixels
silent) in grid columns 0..5; training samples alternate label 0 and 1, shown
as rows 0..2 or 3..5 of column 9 at 200 Hz; test samples carry no label.

Needs torch, BindsNET 0.2.6 and a SpikingGrid checkout, none of which mead
ships (--extra-path: stand-ins for modules bindsnet imports but the check
never uses, such as cv2, gym, tqdm, when they are not installed):

  /usr/bin/python3 tools/bindsnet_check.py --spikinggrid ~/SpikingGrid \\
      --bindsnet ~/bindsnet --extra-path ~/stubs --preset tsk-240 --seed 7 \\
      --train 12 --test 4 --input-seed 1 \\
      --write-fixture tests/sim/data/bindsnet-tsk-240-seed7.gz

--write-fixture PATH writes what the reference did (not the twin) for
tests/sim/test_reference_raster.c, gzip-compressed, all little-endian:

  header   8 bytes  "MEADREF1"
          16 bytes  preset name, NUL-padded
           u64      twin seed
           u32 x 4  samples S, steps T, electrodes E (60), neurons N (240)
  S times  u8       learn flag (1 = STDP on for the sample)
           ceil(T*E/8) bytes  input spikes, T x E bits, step-major,
                    bit i = step i / E, electrode i % E, LSB first in a byte
           ceil(T*N/8) bytes  the reference's raster, T x N bits, the same way
  then     3 x N f32  for the input, excitatory and inhibitory pathways in
                    turn: per postsynaptic neuron, the sum over presynaptic of
                    w^2 of the reference's final weights
"""
import argparse
import gzip
import os
import struct
import subprocess
import sys
import tempfile

CONFIGS = {"bio-240": "mnist01_240n_bio", "tsk-240": "mnist01_240n_tsk"}
WEIGHT_TOL = 1e-5
ROWS, COLS, IMG_COLS = 6, 10, 6


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spikinggrid", required=True, metavar="DIR",
                    help="SpikingGrid checkout (model.py, configs.py)")
    ap.add_argument("--bindsnet", metavar="DIR", help="directory holding the bindsnet package")
    ap.add_argument("--extra-path", metavar="DIR", action="append", default=[],
                    help="added to sys.path (stubs for modules bindsnet imports); repeatable")
    ap.add_argument("--preset", choices=sorted(CONFIGS), default="tsk-240")
    ap.add_argument("--seed", type=int, default=7, help="twin network seed")
    ap.add_argument("--train", type=int, default=12, metavar="K", help="training samples (STDP on)")
    ap.add_argument("--test", type=int, default=4, metavar="M", help="test samples (STDP off)")
    ap.add_argument("--steps", type=int, default=100, help="steps per sample")
    ap.add_argument("--input-seed", type=int, default=1, metavar="S", help="torch seed of the inputs")
    ap.add_argument("--dump", default="build/tools/mead-twin-dump", metavar="PATH",
                    help="mead-twin-dump (default %(default)s)")
    ap.add_argument("--write-fixture", metavar="PATH", help="write the reference's results here")
    a = ap.parse_args()
    if a.train < 0 or a.test < 0 or a.train + a.test == 0 or a.steps <= 0 or a.seed < 0:
        ap.error("need K, M >= 0, K + M > 0, steps > 0 and a non-negative seed")
    return a


def make_inputs(torch, poisson, a):
    """[(learn, uint8 array steps x 60)], the encoder's own Poisson draws."""
    torch.manual_seed(a.input_seed)
    out = []
    for k in range(a.train + a.test):
        img = torch.zeros(1, ROWS, COLS)
        img[0, :, :IMG_COLS] = (torch.rand(ROWS, IMG_COLS) * 200 *
                                (torch.rand(ROWS, IMG_COLS) > 0.4).float())
        learn = k < a.train
        if learn:
            lab = k % 2
            img[0, 3 * lab:3 * lab + 3, COLS - 1] = 200.
        sp = poisson(img, time=a.steps).numpy().astype("uint8")  # (t, 1, 6, 10)
        out.append((learn, sp.reshape(a.steps, ROWS * COLS)))
    return out


def write_inputs(path, samples, steps):
    with open(path, "wb") as f:
        f.write(struct.pack("<II", len(samples), steps))
        for learn, sp in samples:
            f.write(bytes([1 if learn else 0]))
            f.write(sp.tobytes())


def read_matrices(np, raw, off, n, ne):
    """The input, excitatory, inhibitory weights (NaN = pruned) at raw[off:]."""
    out = []
    for npre in (ne, n, n):
        out.append(np.frombuffer(raw, "<f4", npre * n, off).reshape(npre, n).astype(np.float32))
        off += 4 * npre * n
    if off != len(raw):
        sys.exit(f"bindsnet_check: weights file of {len(raw)} bytes, expected {off}")
    return out


def main():
    a = parse_args()
    sys.path[:0] = ([a.bindsnet] if a.bindsnet else []) + a.extra_path + [a.spikinggrid]
    import numpy as np
    import torch
    from bindsnet.encoding import poisson
    import configs
    from model import Net

    cfg = configs.CONFIGURATIONS[CONFIGS[a.preset]]
    samples = make_inputs(torch, poisson, a)
    ns, nt = len(samples), a.steps

    with tempfile.TemporaryDirectory(prefix="bindsnet-check-") as tmp:
        inp = os.path.join(tmp, "inputs.bin")
        prefix = os.path.join(tmp, "twin")
        write_inputs(inp, samples, nt)
        r = subprocess.run([a.dump, a.preset, str(a.seed), inp, prefix])
        if r.returncode:
            sys.exit(f"bindsnet_check: {a.dump} exited {r.returncode}")
        raw = open(prefix + ".net", "rb").read()
        n, ne = struct.unpack_from("<II", raw)
        w_net = read_matrices(np, raw, 8 + 8 * n, n, ne)
        twin_raster = np.fromfile(prefix + ".spk", np.uint8)
        if twin_raster.size != ns * nt * n:
            sys.exit("bindsnet_check: twin raster of the wrong size")
        twin_raster = twin_raster.reshape(ns, nt, n)
        w_fin = read_matrices(np, open(prefix + ".wfin", "rb").read(), 0, n, ne)
    if ne != ROWS * COLS or n != cfg.NEURON_SHAPE[0] * cfg.NEURON_SHAPE[1]:
        sys.exit(f"bindsnet_check: twin has {n} neurons, {ne} electrodes; configuration differs")

    # The seed only fixes the reference's own (overwritten) initial weights.
    torch.manual_seed(0)
    net = Net(inpt_shape=cfg.GRID_SHAPE, neuron_shape=cfg.NEURON_SHAPE,
              lbound=cfg.V_LB, vrest=cfg.V_REST, vreset=cfg.V_RESET, vth=cfg.V_TH,
              theta_w=cfg.THETA_W, sigma=cfg.SIGMA, conn_strength=cfg.CONN_STR,
              sigma_lateral_exc=cfg.SIGMA_EXC, exc_strength=cfg.EXC_STR,
              sigma_lateral_inh=cfg.SIGMA_INH, inh_strength=cfg.INH_STR,
              dt=cfg.DT, refrac=cfg.REFR, tc_decay=cfg.V_DECAY, tc_trace=cfg.TR_DECAY, nu=cfg.LR)
    keys = (("X", "Y"), ("Y", "Y"), ("Z", "Y"))
    for key, w in zip(keys, w_net):
        net.connections[key].w.data = torch.from_numpy(np.nan_to_num(w, nan=0.0)).clone()
        net.masks[key] = torch.from_numpy(np.isnan(w))

    ref_raster = np.zeros((ns, nt, n), np.uint8)
    first = None
    bad_samples = 0
    for k, (learn, sp) in enumerate(samples):
        net.train(bool(learn))
        x = torch.from_numpy(sp.reshape(nt, 1, 1, ROWS, COLS).copy()).byte()
        net.run(inputs={"X": x}, time=nt)
        ref_raster[k] = net.spike_monitor.get("s").view(nt, -1).numpy().astype(np.uint8)
        net.reset_state_variables()
        d = np.argwhere(ref_raster[k] != twin_raster[k])
        if len(d):
            bad_samples += 1
            if first is None:
                first = (k, int(d[0][0]), int(d[0][1]))
        print(f"sample {k} learn={int(learn)} ref={int(ref_raster[k].sum())} "
              f"twin={int(twin_raster[k].sum())} mismatching={len(d)}")
    if first:
        k, t, j = first
        print(f"first mismatch: sample {k} step {t} neuron {j} "
              f"(ref {ref_raster[k, t, j]}, twin {twin_raster[k, t, j]}; "
              f"spikes in the step ref {int(ref_raster[k, t].sum())} twin {int(twin_raster[k, t].sum())})")

    weight_bad = False
    sumsq = []
    for key, name, tw in zip(keys, ("input", "excitatory", "inhibitory"), w_fin):
        rw = net.connections[key].w.detach().numpy().astype(np.float64)
        live = ~np.isnan(tw)
        tw0 = np.nan_to_num(tw, nan=0.0).astype(np.float64)
        # Off the live synapses the twin has none, so any reference weight there counts.
        scale = np.abs(tw0).max() if live.any() else 1.0
        rel = np.abs(rw - tw0).max() / scale
        outside = int(np.count_nonzero(rw[~live]))
        weight_bad |= not rel <= WEIGHT_TOL
        print(f"{name}: max |w_ref - w_twin| / max |w_twin| = {rel:.3g}, "
              f"reference weights off the twin's synapses: {outside}")
        sumsq.append((rw * rw).sum(axis=0).astype("<f4"))

    total_ref, total_twin = int(ref_raster.sum()), int(twin_raster.sum())
    ok = first is None and not weight_bad
    print(f"{a.preset} seed {a.seed}: {ns} samples x {nt} steps, spikes ref {total_ref} twin {total_twin}, "
          f"{bad_samples} samples mismatching, weights {'within' if not weight_bad else 'beyond'} "
          f"{WEIGHT_TOL:g}: {'OK' if ok else 'FAIL'}")

    if a.write_fixture:
        name = a.preset.encode()
        # No name or time in the gzip header: the same run gives the same bytes.
        with open(a.write_fixture, "wb") as raw_f, \
                gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw_f, mtime=0) as f:
            f.write(b"MEADREF1" + name + bytes(16 - len(name)))
            f.write(struct.pack("<QIIII", a.seed, ns, nt, ne, n))
            for k, (learn, sp) in enumerate(samples):
                f.write(bytes([1 if learn else 0]))
                f.write(np.packbits(sp.reshape(-1), bitorder="little").tobytes())
                f.write(np.packbits(ref_raster[k].reshape(-1), bitorder="little").tobytes())
            for s in sumsq:
                f.write(s.tobytes())
        print(f"wrote {a.write_fixture} ({os.path.getsize(a.write_fixture)} bytes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
