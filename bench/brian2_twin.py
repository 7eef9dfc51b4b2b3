#!/usr/bin/python3
"""Brian2 anchor implementation of the digital-twin culture model.

Specification: docs/digital-twin.md (reference code:
GabrieleLagani/SpikingGrid on BindsNET 0.2.6).  This file is a measurement
anchor: it reproduces the per-step semantics of the reference and times it.

Units are the reference's normalised units: membrane 0 = -90 mV, 1 = -50 mV
(1 unit = 40 mV), length 1 = 3 mm, time in ms, dt = 1 ms.

Per step t (schedule: start, groups, thresholds, resets, synapses, end):
  start      every 100 ms (sample boundary, unless --no-reset): re-normalise
             the three weight matrices per postsynaptic neuron, then reset
             membranes, traces, refractory counters, pending input.
  groups     xz <- x (relay trace = neuron trace one step ago); x <- x*dtr;
             v <- rest + (v-rest)*dm; v <- v + I (skipped while refractory);
             I <- 0; refractory counter decremented; v <- max(v, lb).
  thresholds spike if v >= 1; 'relay' event if the neuron spiked at t-1
             (this is the one-to-one IF relay of the reference: it fires one
             step after its neuron, and its synapses are the inhibitory ones).
  resets     spiking neurons: v <- reset, refractory 5 steps, x <- 1.
  synapses   spikes of step t add their (already STDP-updated) weights into I,
             consumed at t+1 (one-step delay); relay events add inhibitory
             weights (so inhibition lands at t+2, one step after excitation);
             STDP: on pre event  w -= A- * x_post ; on post spike w += A+ * x_pre
             (nearest-spike traces that already include step t's spikes, as in
             BindsNET), clamped w >= 0 (electrode, excitatory) and w <= 0
             (inhibitory, with signs reversed).
Pruned weights (|w| < 1e-3 at construction) are simply absent synapses, so
they stay zero for ever.

Electrode input: 60 electrodes on a 6 x 10 grid (pitch 0.5 mm); the left 6x6
block is driven with a fixed random rate pattern (uniform 0..200 Hz, seeded)
and the label cells (column 9, rows 0..2 = class 0, or the whole column with
--label all) at 200 Hz.  Spike trains use the reference's encoder: integer
Poisson inter-spike intervals with mean 1000/rate ms, zero intervals bumped
to 1, redrawn for every 100 ms sample.

Prints one line on stdout:
  neurons=N synapses=M bio_seconds=S wall_seconds=W realtime_factor=S/W spikes=K
where W is the simulation loop only.  Setup/compile times go to stderr.
"""
import argparse
import os
import sys
import time

import numpy as np

T0 = time.time()

CONFIGS = {
    # name: (v_rest, v_reset, v_lb, exc_str, inh_str)
    'bio': (0.5, 0.5, 0.0, 1.0, 10.0),
    'tsk': (0.0, 0.5, None, 3.0, 300.0),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--neurons', type=int, default=240, choices=[240, 10140])
    p.add_argument('--seconds', type=float, default=1.0, help='biological time (s)')
    p.add_argument('--stdp', choices=['on', 'off'], default='on')
    p.add_argument('--target', choices=['runtime', 'cpp_standalone'], default='cpp_standalone')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--config', choices=sorted(CONFIGS), default='bio')
    p.add_argument('--threads', type=int, default=0,
                   help='cpp_standalone OpenMP threads (0 = no OpenMP, single thread)')
    p.add_argument('--label', choices=['class0', 'all', 'none'], default='class0')
    p.add_argument('--no-reset', action='store_true',
                   help='run continuously: no state reset / re-normalisation every 100 ms')
    p.add_argument('--build-dir', default=None)
    p.add_argument('--sample-ms', type=int, default=100)
    p.add_argument('--record', default=None,
                   help='save initial/final weights, stimulus and spike raster to this .npz '
                        '(for compare_bindsnet.py)')
    return p.parse_args()


def geometry(n, rng):
    rows, cols = {240: (12, 20), 10140: (78, 130)}[n]
    width = cols / rows                     # 5/3 (= 5 mm), height 1 (= 3 mm)
    # reference: coord_x = rand(shape) * width, coord_y = rand(shape)
    x = rng.random(n) * width
    y = rng.random(n)
    gx = (np.arange(10) + 0.5) * width / 10
    gy = (np.arange(6) + 0.5) / 6
    ex, ey = np.meshgrid(gx, gy)            # electrode e = row*10 + col
    return x, y, ex.ravel(), ey.ravel(), width


def dense_to_sparse(pre_x, pre_y, post_x, post_y, sigma, strength, theta, rng,
                    self_conn_zero, sign=1.0, chunk=512):
    """w[i,j] = |N(0,1)| exp(-d^2/2 sigma^2), pruned below theta, normalised so
    that sum_i |w[i,j]| = strength for every post j. Returns (i, j, w) sorted by i."""
    npre, npost = len(pre_x), len(post_x)
    colsum = np.zeros(npost)
    I, J, W = [], [], []
    for a in range(0, npre, chunk):
        b = min(npre, a + chunk)
        d2 = (pre_x[a:b, None] - post_x[None, :]) ** 2 + (pre_y[a:b, None] - post_y[None, :]) ** 2
        w = np.abs(rng.standard_normal((b - a, npost))) * np.exp(-d2 / (2 * sigma ** 2))
        if self_conn_zero:
            idx = np.arange(a, b)
            w[idx - a, idx] = 0.0
        ii, jj = np.nonzero(w >= theta)
        ww = w[ii, jj]
        colsum += np.bincount(jj, weights=ww, minlength=npost)
        I.append((ii + a).astype(np.int32))
        J.append(jj.astype(np.int32))
        W.append(ww)
    I = np.concatenate(I); J = np.concatenate(J); W = np.concatenate(W)
    colsum[colsum == 0] = 1.0
    W *= strength / colsum[J]
    return I, J, sign * W


def poisson_trains(rates_hz, n_samples, sample_ms, rng):
    """Reference encoder (bindsnet 0.2.6 encodings.poisson), per sample:
    ISI ~ Poisson(1000/rate) (>=1), spike times cumsum, kept if <= T, shifted by -1."""
    idx_all, t_all = [], []
    on = np.nonzero(rates_hz > 0)[0]
    mean_isi = 1000.0 / rates_hz[on]
    for s in range(n_samples):
        isi = rng.poisson(mean_isi, size=(sample_ms + 1, len(on))).astype(np.int64)
        isi[isi == 0] = 1
        times = np.cumsum(isi, axis=0)
        k, e = np.nonzero(times <= sample_ms)
        tt = times[k, e] - 1 + s * sample_ms          # ms, 0..sample_ms-1 within sample
        idx_all.append(on[e]); t_all.append(tt)
    idx = np.concatenate(idx_all); tms = np.concatenate(t_all)
    order = np.lexsort((idx, tms))
    return idx[order].astype(np.int32), tms[order]


def main():
    a = parse()
    import brian2 as b2
    from brian2 import ms, second, Clock

    v_rest, v_reset, v_lb, exc_str, inh_str = CONFIGS[a.config]
    V_TH, REFR, TAU_M, TAU_TR = 1.0, 5, 50.0, 20.0
    A_MINUS, A_PLUS = 1e-4, 1e-2
    SIG_IN, SIG_E, SIG_I, THETA = 0.1, 0.4, 0.05, 1e-3
    IN_STR = 1.0
    SAMPLE = a.sample_ms

    if a.target == 'cpp_standalone':
        bdir = a.build_dir or f'/tmp/brian2_twin_build_{a.neurons}_{a.stdp}'
        b2.set_device('cpp_standalone', directory=bdir, build_on_run=False)
        if a.threads > 0:
            b2.prefs.devices.cpp_standalone.openmp_threads = a.threads
        b2.prefs.devices.cpp_standalone.extra_make_args_unix = ['-j2']
    else:
        b2.prefs.codegen.target = 'cython'
    b2.prefs.codegen.cpp.extra_compile_args_gcc = ['-w', '-O3', '-ffast-math', '-fno-finite-math-only', '-march=native']
    b2.defaultclock.dt = 1 * ms
    b2.seed(a.seed)
    rng = np.random.default_rng(a.seed)

    # ---------------- geometry and weights ----------------
    tw = time.time()
    nx, ny, ex, ey, width = geometry(a.neurons, rng)
    Ii, Ij, Iw = dense_to_sparse(ex, ey, nx, ny, SIG_IN, IN_STR, THETA, rng, False)
    Ei, Ej, Ew = dense_to_sparse(nx, ny, nx, ny, SIG_E, exc_str, THETA, rng, True)
    Hi, Hj, Hw = dense_to_sparse(nx, ny, nx, ny, SIG_I, inh_str, THETA, rng, True, sign=-1.0)
    t_weights = time.time() - tw
    n_syn = len(Iw) + len(Ew) + len(Hw)
    print(f'# weights: input {len(Iw)} ({len(Iw)/(60*a.neurons):.3f} dense), '
          f'exc {len(Ew)} ({len(Ew)/a.neurons**2:.3f}), inh {len(Hw)} ({len(Hw)/a.neurons**2:.4f}); '
          f'built in {t_weights:.1f}s', file=sys.stderr)

    # ---------------- stimulation ----------------
    rates = np.zeros(60)
    pat = rng.uniform(0, 200, size=(6, 6))
    rates.reshape(6, 10)[:, :6] = pat
    if a.label == 'class0':
        rates.reshape(6, 10)[0:3, 9] = 200.0
    elif a.label == 'all':
        rates.reshape(6, 10)[:, 9] = 200.0
    n_samples = int(np.ceil(a.seconds * 1000 / SAMPLE))
    sidx, stimes = poisson_trains(rates, n_samples, SAMPLE, rng)
    keep = stimes < a.seconds * 1000
    sidx, stimes = sidx[keep], stimes[keep]

    # ---------------- network ----------------
    dm = float(np.exp(-1.0 / TAU_M))
    dtr = float(np.exp(-1.0 / TAU_TR))
    lb_code = f'v = clip(v, {v_lb!r}, inf)' if v_lb is not None else ''
    G = b2.NeuronGroup(
        a.neurons,
        '''v : 1
           I : 1
           rc : 1
           x : 1
           xz : 1
           rs : 1
           sp : 1
           nspk : 1
           wsum_in : 1
           wsum_e : 1
           wsum_i : 1''',
        threshold='v >= 1.0',
        reset=f'v = {v_reset!r}\nrc = {REFR}\nx = 1\nsp = 1\nnspk += 1',
        events={'relay': 'rs > 0.5'},
        name='culture')
    G.v = v_rest
    G.run_regularly(f'''xz = x
x = x * {dtr!r}
rs = sp
sp = 0
v = {v_rest!r} + (v - {v_rest!r}) * {dm!r}
v = v + I * int(rc == 0)
I = 0
rc = clip(rc - 1, 0, inf)
{lb_code}''', when='groups', name='culture_step')

    E = b2.SpikeGeneratorGroup(60, sidx, stimes * ms, name='electrodes')

    stdp = a.stdp == 'on'
    if stdp:
        Se = b2.Synapses(E, G, '''w : 1
                         dapre/dt = -apre/({TAU_TR}*ms) : 1 (event-driven)
                         wsum_in_post = abs(w) : 1 (summed)'''.replace('{TAU_TR}', repr(TAU_TR)),
                         on_pre=f'apre = 1\nw = clip(w - {A_MINUS!r} * x_post, 0, inf)\nI_post += w',
                         on_post=f'w = clip(w + {A_PLUS!r} * apre, 0, inf)', name='syn_in')
        Sx = b2.Synapses(G, G, 'w : 1\nwsum_e_post = abs(w) : 1 (summed)',
                         on_pre=f'w = clip(w - {A_MINUS!r} * x_post, 0, inf)\nI_post += w',
                         on_post=f'w = clip(w + {A_PLUS!r} * x_pre, 0, inf)', name='syn_exc')
        Si = b2.Synapses(G, G, 'w : 1\nwsum_i_post = abs(w) : 1 (summed)',
                         on_pre=f'w = clip(w + {A_MINUS!r} * x_post, -inf, 0)\nI_post += w',
                         on_post=f'w = clip(w - {A_PLUS!r} * xz_pre, -inf, 0)',
                         on_event={'pre': 'relay', 'post': 'spike'}, name='syn_inh')
    else:
        Se = b2.Synapses(E, G, 'w : 1\nwsum_in_post = abs(w) : 1 (summed)', on_pre='I_post += w', name='syn_in')
        Sx = b2.Synapses(G, G, 'w : 1\nwsum_e_post = abs(w) : 1 (summed)', on_pre='I_post += w', name='syn_exc')
        Si = b2.Synapses(G, G, 'w : 1\nwsum_i_post = abs(w) : 1 (summed)', on_pre='I_post += w',
                         on_event={'pre': 'relay'}, name='syn_inh')
    tc = time.time()
    Se.connect(i=Ii, j=Ij); Se.w = Iw
    Sx.connect(i=Ei, j=Ej); Sx.w = Ew
    Si.connect(i=Hi, j=Hj); Si.w = Hw
    t_connect = time.time() - tc
    rec = None
    if a.record:
        rec = dict(neurons=a.neurons, config=a.config, x=nx, y=ny, sidx=sidx, stimes=stimes,
                   in_i=Ii, in_j=Ij, in_w0=Iw, exc_i=Ei, exc_j=Ej, exc_w0=Ew,
                   inh_i=Hi, inh_j=Hj, inh_w0=Hw, seconds=a.seconds, stdp=a.stdp,
                   reset=not a.no_reset)
    del Ei, Ej, Ew

    objs = [G, E, Se, Sx, Si]
    if rec is not None:
        mon = b2.SpikeMonitor(G, name='spikemon')
        objs.append(mon)
    if not a.no_reset:
        # Sample boundary every SAMPLE ms: summed |w| per post (only then, not every
        # step), re-normalise, then reset the state.
        bclock = Clock(dt=SAMPLE * ms, name='sample_clock')
        for S, var, strength in ((Se, 'wsum_in_post', IN_STR), (Sx, 'wsum_e_post', exc_str),
                                 (Si, 'wsum_i_post', inh_str)):
            upd = S.summed_updaters[var]
            upd._clock = bclock
            upd.when, upd.order = 'start', 0
            S.run_regularly(f'w = w * {strength!r} / ({var} + 1.0*int({var} == 0))',
                            clock=bclock, when='start', order=1, name=S.name + '_norm')
        G.run_regularly(f'v = {v_rest!r}\nI = 0\nrc = 0\nx = 0\nxz = 0\nrs = 0\nsp = 0',
                        clock=bclock, when='start', order=2, name='culture_reset')
        if stdp:
            Se.run_regularly('apre = 0', clock=bclock, when='start', order=2, name='syn_in_tr_reset')
    else:
        for S, var in ((Se, 'wsum_in_post'), (Sx, 'wsum_e_post'), (Si, 'wsum_i_post')):
            # never needed: give the summed updater a clock that never ticks within the run
            upd = S.summed_updaters[var]
            upd._clock = Clock(dt=(a.seconds * 1000 + 1000) * ms, name=S.name + '_never')
    net = b2.Network(objs)
    net.schedule = ['start', 'groups', 'thresholds', 'resets', 'synapses', 'end']

    t_py_setup = time.time() - T0
    tr = time.time()
    net.run(a.seconds * second)
    if a.target == 'cpp_standalone':
        dev = b2.get_device()
        dev.build(directory=bdir, compile=True, run=True, debug=False, clean=False)
        wall = dev._last_run_time
        timers = getattr(dev, 'timers', {})
        setup_info = (f'python_setup={t_py_setup:.1f}s codegen+compile+binary_total={time.time()-tr:.1f}s '
                      f'timers={ {k: round(v, 1) if isinstance(v, float) else v for k, v in timers.items()} }')
    else:
        wall = b2.get_device()._last_run_time
        setup_info = f'python_setup={t_py_setup:.1f}s run_call_total(incl. codegen/compile)={time.time()-tr:.1f}s'
    spikes = int(np.sum(G.nspk[:]))
    if rec is not None:
        rec.update(spk_i=np.asarray(mon.i[:]), spk_t=np.asarray(mon.t[:] / ms).round().astype(np.int64),
                   in_w=np.asarray(Se.w[:]), exc_w=np.asarray(Sx.w[:]), inh_w=np.asarray(Si.w[:]),
                   in_i1=np.asarray(Se.i[:]), in_j1=np.asarray(Se.j[:]))
        np.savez_compressed(a.record, **rec)
    print(f'# setup: weights={t_weights:.1f}s connect={t_connect:.1f}s {setup_info}', file=sys.stderr)
    print(f'# mean rate {spikes / a.neurons / a.seconds:.1f} Hz per neuron; electrode spikes {len(sidx)}',
          file=sys.stderr)
    print(f'neurons={a.neurons} synapses={n_syn} bio_seconds={a.seconds:g} wall_seconds={wall:.3f} '
          f'realtime_factor={a.seconds / wall:.4f} spikes={spikes}', flush=True)


if __name__ == '__main__':
    main()
