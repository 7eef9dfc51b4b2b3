#!/usr/bin/python3
"""mead-export --to nwb and --to openephys, read back by tools no one here wrote.

usage: export_check.py MEAD_EXPORT WORKDIR REC...

For each recording (made by the real daemon): the recording is decoded
here, independently of the C reader (header, records, checksums, torn
tail), then exported both ways and read back:
  - NWB with h5py, and validated with hdmf: against the hdmf-common schema
    Debian's python3-hdmf ships (every table, column, index and region),
    and against the NWB core schema when a copy is at hand ($NWB_SCHEMA_DIR
    = a folder of nwb.*.yaml, or pynwb's own); every typed object is also
    checked by hand: its neurodata_type, namespace, object_id and what its
    type requires, every reference resolved;
  - Open Ephys with Neo (OpenEphysBinaryRawIO) and numpy;
and every value compared exactly with the recording's: raw counts, sample
numbers, spike times per electrode, pulses, events, trials.  Then the
recording is cut at random byte offsets (seeded) and each cut exported the
same way: its readable prefix, and nothing else, must come out, and the
exporters must say the tail was torn.  Exits 77 when a package is missing.
"""
import glob
import heapq
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    import numpy as np
    import h5py
    import yaml
    import hdmf
    from hdmf.spec import NamespaceCatalog, GroupSpec, DatasetSpec, SpecNamespace
    from hdmf.build import TypeMap, BuildManager, GroupBuilder
    from hdmf.backends.hdf5 import HDF5IO
    from hdmf.validate import ValidatorMap
    from neo.rawio import OpenEphysBinaryRawIO
except ImportError as e:
    print("skip: %s (python3-numpy, python3-h5py, python3-hdmf, python3-neo, python3-yaml: "
          "tools/install-deps.sh installs them)" % e)
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)
    return cond


# ---- the recording, decoded here -------------------------------------

SPIKE = np.dtype([('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_uv', '<f4')])
STIM = np.dtype([('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_ua', '<f4'),
                 ('phase_us', '<u4'), ('interphase_us', '<u4'), ('requested_sample', '<u8')])
EVENT = np.dtype([('sample', '<u8'), ('type', '<u4'), ('value', '<i4'), ('samples', '<u4'),
                  ('electrode', '<u2'), ('reserved', '<u2')])
# docs/wire-v1.md
EVENT_NAMES = {1: 'run_start', 2: 'run_end', 3: 'trial_start', 4: 'trial_end', 5: 'label', 6: 'phase',
               7: 'item', 8: 'stim_refused', 9: 'overflow', 10: 'gap', 11: 'late', 12: 'device_gone',
               13: 'device_back', 14: 'blank', 15: 'stall', 16: 'stim_lost',
               17: 'unread', 18: 'threshold', 19: 'digital'}
REASONS = {0: 'none', 1: 'busy', 2: 'range', 3: 'queue_full', 4: 'device_gone', 5: 'io', 6: 'cancelled', 7: 'unknown',
           8: 'too_late', 9: 'unsupported', 32: 'safe', 33: 'electrode', 34: 'max_amplitude_ua',
           35: 'max_phase_us', 36: 'max_interphase_us', 37: 'max_charge_nc', 38: 'max_rate_hz',
           39: 'min_interval_us', 40: 'max_duty_cycle', 41: 'max_train_pulses', 42: 'no_stimulation',
           43: 'stimulator_busy', 64: 'tick_limit', 65: 'overlap', 66: 'no_device'}
PHASES = {0: 'train', 1: 'test', 2: 'rest'}


class Recording:
    pass


def decode(path):
    """docs/recording.md, read with the struct and zlib modules."""
    b = open(path, 'rb').read()
    r = Recording()
    if len(b) < 24 or b[:8] != b'MEADREC\0':
        return None
    version, hlen, clen, mlen = struct.unpack('<IIII', b[8:24])
    if hlen > len(b) or zlib.crc32(b[:hlen - 4]) != struct.unpack('<I', b[hlen - 4:hlen])[0]:
        return None
    r.header_len = hlen
    r.config = b[24:24 + clen].decode()
    r.meta = json.loads(b[24 + clen:24 + clen + mlen])
    r.rate = r.meta['sample_rate_hz']
    r.uv = r.meta['uv_per_count']
    lay = r.meta['layout']
    r.labels = lay['labels']
    r.n = lay['count']
    r.excluded = set(lay['excluded'])
    r.rows, r.cols, r.pitch = lay['rows'], lay['cols'], lay['pitch_um']
    parts = {1: [], 2: [], 3: []}
    raw, raw_sample = [], []
    r.torn = False
    r.status = []
    pos = hlen
    while pos < len(b):
        if pos + 8 > len(b):
            r.torn = True
            break
        sync, blen = struct.unpack('<II', b[pos:pos + 8])
        if sync != 0x4352454D:
            raise ValueError('corrupt record at %d' % pos)
        if pos + 8 + blen + 4 > len(b):
            r.torn = True
            break
        body = b[pos + 8:pos + 8 + blen]
        if zlib.crc32(b[pos + 4:pos + 8 + blen]) != struct.unpack('<I', b[pos + 8 + blen:pos + 12 + blen])[0]:
            raise ValueError('checksum at %d' % pos)
        tl = body[0]
        wire = body[1 + tl:1 + tl + 32]
        magic, ver, kind, seq, sample, count, size = struct.unpack('<4sHHQQII', wire)
        payload = body[1 + tl + 32:]
        if kind in parts:
            dt = {1: SPIKE, 2: STIM, 3: EVENT}[kind]
            a = np.zeros(count, dt)
            raw_rec = np.frombuffer(payload, np.uint8).reshape(count, size)
            have = min(size, dt.itemsize)
            view = a.view(np.uint8).reshape(count, dt.itemsize)
            view[:, :have] = raw_rec[:, :have]
            if kind == 2 and size < 32:
                a['requested_sample'] = a['sample']
            parts[kind].append(a)
        elif kind == 4:
            raw.append(np.frombuffer(payload, '<i2').reshape(count, size // 2))
            raw_sample.append(sample + np.arange(count, dtype=np.uint64))
        elif kind == 5:
            r.status.append(json.loads(payload))
        pos += 12 + blen
    r.spikes = np.concatenate(parts[1]) if parts[1] else np.zeros(0, SPIKE)
    r.stim = np.concatenate(parts[2]) if parts[2] else np.zeros(0, STIM)
    r.events = np.concatenate(parts[3]) if parts[3] else np.zeros(0, EVENT)
    r.raw = np.concatenate(raw) if raw else None
    r.raw_sample = np.concatenate(raw_sample) if raw else None
    return r


def seconds(r, samples):
    return np.asarray(samples, dtype=np.uint64).astype(np.float64) / float(r.rate)


def end_sample(r):
    ends = [0]
    if len(r.spikes):
        ends.append(int(r.spikes['sample'].max()) + 1)
    if len(r.stim):
        ends.append(int(r.stim['sample'].max()) + 1)
    for e in r.events:
        ends.append(int(e['sample']) + (int(e['samples']) or 1))
    if r.raw_sample is not None and len(r.raw_sample):
        ends.append(int(r.raw_sample[-1]) + 1)
    return max(ends)


def trials(r):
    """Trials from the events: trial_start..trial_end, item and label after
    the start, the phase in force at it (docs/protocols.md)."""
    out, cur, phase = [], None, -1
    for e in r.events:
        t, v, s = int(e['type']), int(e['value']), int(e['sample'])
        if t == 6:
            phase = v
        elif t == 3:
            if cur:
                out.append(dict(cur, stop=s, ended=False))
            cur = dict(start=s, trial=v, item=-1, label=-1, phase=phase)
        elif t == 7 and cur:
            cur['item'] = v
        elif t == 5 and cur:
            cur['label'] = v
        elif t == 4 and cur:
            out.append(dict(cur, stop=s, ended=True))
            cur = None
    if cur:
        out.append(dict(cur, stop=max(end_sample(r), cur['start']), ended=False))
    return out


def invalid_times(r):
    """The samples the rig lost: overflow and gap ranges, device_gone to
    device_back (or the end of the recording)."""
    out, gone = [], None
    for e in r.events:
        t, s, n = int(e['type']), int(e['sample']), int(e['samples'])
        if t in (9, 10) and n:
            out.append((EVENT_NAMES[t], s, s + n))
        elif t == 12 and gone is None:
            gone = s
        elif t == 13 and gone is not None:
            out.append(('device_gone', gone, max(s, gone)))
            gone = None
    if gone is not None:
        out.append(('device_gone', gone, max(end_sample(r), gone)))
    return out


def with_losses(rec, path):
    """The recording with one more events message, as a rig that loses data
    would send it: every loss and refusal type, sample ranges included; and
    digital inputs (the run's first levels, changes, a level said twice)."""
    b = open(rec, 'rb').read()
    r = decode(rec)
    last = int(r.events['sample'].max()) if len(r.events) else 0
    evs = [(100, 9, 0, 250, 0), (400, 10, 0, 25, 0), (500, 11, 0, 30, 0), (600, 12, 0, 0, 0),
           (900, 13, 0, 300, 0), (950, 8, 1, 0, 12), (960, 8, 34, 0, 3), (970, 8, 120, 0, 7),
           (980, 14, 0, 75, 65535), (990, 14, 0, 75, 4), (1000, 15, 2, 0, 0), (1010, 16, 3, 0, 0),
           (1020, 99, -5, 0, 0), (last + 10, 12, 0, 0, 0),
           (1, 19, 0, 0, 0), (1, 19, 1, 0, 3), (1100, 19, 1, 0, 0), (1100, 19, 0, 0, 3), (1150, 19, 1, 0, 0),
           (1200, 19, 0, 0, 0), (1250, 19, 1, 0, 3), (1300, 19, 0, 0, 3)]
    payload = b''.join(struct.pack('<QIiIHH', s, t, v, n, el, 0) for s, t, v, n, el in evs)
    seq = sum(1 for _ in iter_kind(b, r.header_len, 3))
    wire = struct.pack('<4sHHQQII', b'MEAD', 1, 3, seq, last, len(evs), 24)
    body = bytes([6]) + b'events' + wire + payload
    rec_bytes = struct.pack('<II', 0x4352454D, len(body)) + body + struct.pack('<I', zlib.crc32(struct.pack('<I', len(body)) + body))
    with open(path, 'wb') as f:
        f.write(b + rec_bytes)


def iter_kind(b, pos, kind):
    while pos + 8 <= len(b):
        _, blen = struct.unpack('<II', b[pos:pos + 8])
        body = b[pos + 8:pos + 8 + blen]
        if struct.unpack('<H', body[1 + body[0] + 6:1 + body[0] + 8])[0] == kind:
            yield pos
        pos += 12 + blen


# ---- NWB ------------------------------------------------------------

UUID4 = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
ISO = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$')
# the namespace of every type mead-export writes (NWB 2.6 core, hdmf-common 1.5)
NAMESPACE = {'NWBFile': 'core', 'ElectricalSeries': 'core', 'Device': 'core', 'ElectrodeGroup': 'core',
             'Units': 'core', 'TimeIntervals': 'core', 'DynamicTable': 'hdmf-common',
             'VectorData': 'hdmf-common', 'VectorIndex': 'hdmf-common', 'ElementIdentifiers': 'hdmf-common',
             'DynamicTableRegion': 'hdmf-common'}
TABLES = ('DynamicTable', 'Units', 'TimeIntervals')


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def attr(obj, name):
    return text(obj.attrs.get(name))


def deref(f, obj, name):
    ref = obj.attrs.get(name)
    return f[ref] if isinstance(ref, h5py.Reference) and ref else None


def core_schema_dir():
    d = os.environ.get('NWB_SCHEMA_DIR')
    if d and os.path.exists(os.path.join(d, 'nwb.namespace.yaml')):
        return d
    try:
        import pynwb
        d = os.path.join(os.path.dirname(pynwb.__file__), 'nwb-schema', 'core')
        if os.path.exists(os.path.join(d, 'nwb.namespace.yaml')):
            return d
    except ImportError:
        pass
    return None


def catalog(tmp):
    """hdmf's catalog: Debian's hdmf-common schema, and NWB core when at hand.
    The NWB schema language is hdmf's with neurodata_type_* for data_type_*
    (pynwb maps the keys through its spec classes; here the YAML is)."""
    cat = NamespaceCatalog(GroupSpec, DatasetSpec, SpecNamespace)
    cat.load_namespaces(os.path.join(os.path.dirname(hdmf.__file__), 'common', 'hdmf-common-schema', 'common',
                                     'namespace.yaml'))
    core = core_schema_dir()
    if core:
        def rename(x):
            if isinstance(x, dict):
                return {{'neurodata_type_def': 'data_type_def', 'neurodata_type_inc': 'data_type_inc'}.get(k, k):
                        rename(v) for k, v in x.items()}
            if isinstance(x, list):
                return [rename(v) for v in x]
            return x
        d = os.path.join(tmp, 'nwb-core')
        os.makedirs(d, exist_ok=True)
        for src in glob.glob(os.path.join(core, '*.yaml')):
            with open(os.path.join(d, os.path.basename(src)), 'w') as out:
                yaml.safe_dump(rename(yaml.safe_load(open(src))), out)
        cat.load_namespaces(os.path.join(d, 'nwb.namespace.yaml'))
    return cat, core


def hdmf_validate(path, cat, core):
    io = HDF5IO(path, mode='r', manager=BuildManager(TypeMap(cat)))
    root = io.read_builder()
    builders, seen = [], set()

    def walk(b):
        if id(b) in seen:
            return
        seen.add(id(b))
        if 'neurodata_type' in b.attributes:
            b.attributes['data_type'] = b.attributes.pop('neurodata_type')
            builders.append(b)
        if isinstance(b, GroupBuilder):
            for c in list(b.groups.values()) + list(b.datasets.values()):
                walk(c)
            for link in b.links.values():
                walk(link.builder)
    walk(root)
    errors = []
    common = ValidatorMap(cat.get_namespace('hdmf-common'))
    n = 0
    for b in builders:
        t, ns = b.attributes['data_type'], b.attributes.get('namespace')
        if ns == 'hdmf-common':
            errors += ['%s: %s' % (b.name, e) for e in common.validate(b)]
            n += 1
        elif t in ('Units', 'TimeIntervals'):
            errors += ['%s: %s' % (b.name, e) for e in common.get_validator('DynamicTable').validate(b)]
            n += 1
    what = '%d tables and columns against hdmf-common %s' % (n, cat.get_namespace('hdmf-common').version)
    if core:
        errors += ['core: %s' % e for e in ValidatorMap(cat.get_namespace('core')).validate(root)]
        what += ', the whole file against NWB core %s' % cat.get_namespace('core').version
    io.close()
    return errors, what


def structure(f):
    """Every typed object: its type's namespace, a unique UUID4 object_id,
    what its type requires, its references resolved."""
    ids = set()
    typed = []
    f.visititems(lambda name, obj: typed.append((name, obj)) if 'neurodata_type' in obj.attrs else None)
    typed.append(('/', f))
    for name, obj in typed:
        t, ns, oid = attr(obj, 'neurodata_type'), attr(obj, 'namespace'), attr(obj, 'object_id')
        check(t in NAMESPACE, '%s: a type mead-export does not write: %s' % (name, t))
        check(NAMESPACE.get(t) == ns, '%s: %s in namespace %s' % (name, t, ns))
        check(oid and UUID4.match(oid) and oid not in ids, '%s: object_id %r' % (name, oid))
        ids.add(oid)
        if t in TABLES:
            check(isinstance(obj, h5py.Group) and 'id' in obj and attr(obj['id'], 'neurodata_type') ==
                  'ElementIdentifiers', '%s: a table with an id' % name)
            check(isinstance(attr(obj, 'description'), str), '%s: description' % name)
            cols = [text(c) for c in obj.attrs['colnames']]
            rows = len(obj['id'])
            for c in cols:
                if not check(c in obj, '%s: column %s listed and present' % (name, c)):
                    continue
                col = obj[c]
                length = len(col)
                if c + '_index' in obj:
                    idx = obj[c + '_index'][:]
                    check(len(idx) == rows and np.all(np.diff(idx.astype(np.int64)) >= 0) and
                          (rows == 0 or idx[-1] == length), '%s: %s_index' % (name, c))
                    check(deref(f, obj[c + '_index'], 'target') == col, '%s: %s_index targets %s' % (name, c, c))
                else:
                    check(length == rows, '%s: column %s has %d rows of %d' % (name, c, length, rows))
            for d in obj:
                if d != 'id' and not d.endswith('_index'):
                    check(d in cols, '%s: dataset %s not in colnames' % (name, d))
        if t in ('VectorData', 'VectorIndex', 'DynamicTableRegion'):
            check(isinstance(attr(obj, 'description'), str), '%s: description' % name)
        if t == 'DynamicTableRegion':
            table = deref(f, obj, 'table')
            check(table is not None and attr(table, 'neurodata_type') in TABLES, '%s: table reference' % name)
            if table is not None and len(obj):
                check(obj[:].min() >= 0 and obj[:].max() < len(table['id']), '%s: rows in range' % name)
        if t == 'TimeIntervals':
            for c in ('start_time', 'stop_time'):
                check(c in obj and obj[c].dtype.kind == 'f', '%s: %s' % (name, c))
            if 'start_time' in obj:
                check(np.all(obj['stop_time'][:] >= obj['start_time'][:]), '%s: stop_time >= start_time' % name)
        if t == 'ElectricalSeries':
            d = obj['data']
            check(attr(d, 'unit') == 'volts' and d.attrs['conversion'].dtype == np.float32,
                  '%s: data in volts with a float32 conversion' % name)
            check(('starting_time' in obj) != ('timestamps' in obj), '%s: starting_time or timestamps' % name)
            if 'starting_time' in obj:
                check(obj['starting_time'].attrs['rate'].dtype == np.float32 and
                      attr(obj['starting_time'], 'unit') == 'seconds', '%s: starting_time rate' % name)
            check(attr(obj['electrodes'], 'neurodata_type') == 'DynamicTableRegion', '%s: electrodes' % name)
        if t == 'ElectrodeGroup':
            check(isinstance(attr(obj, 'description'), str) and isinstance(attr(obj, 'location'), str),
                  '%s: description, location' % name)
            link = obj.get('device', getlink=True)
            check(isinstance(link, h5py.SoftLink) and attr(obj['device'], 'neurodata_type') == 'Device',
                  '%s: device link to a Device' % name)
        if t == 'NWBFile':
            check(attr(obj, 'nwb_version') == '2.6.0', 'nwb_version')
            for g in ('acquisition', 'analysis', 'general', 'processing', 'stimulus/presentation',
                      'stimulus/templates'):
                check(g in obj, 'group %s' % g)
            for d in ('identifier', 'session_description', 'session_start_time', 'timestamps_reference_time'):
                check(d in obj and h5py.check_string_dtype(obj[d].dtype) is not None and obj[d].shape == (),
                      'text %s' % d)
            for d in ('session_start_time', 'timestamps_reference_time'):
                check(ISO.match(text(obj[d][()])), '%s is ISO 8601' % d)
            check(obj['file_create_date'].shape == (1,) and ISO.match(text(obj['file_create_date'][0])),
                  'file_create_date')
            check(attr(obj['general/extracellular_ephys/electrodes'], 'neurodata_type') == 'DynamicTable',
                  'the electrodes table')
    return len(typed)


def column(t, name):
    return t[name][:]


def ragged(t, name, row):
    idx = t[name + '_index'][:]
    lo = 0 if row == 0 else int(idx[row - 1])
    return t[name][lo:int(idx[row])]


def check_nwb(r, path, cat, core, tmp, tag):
    errors, what = hdmf_validate(path, cat, core)
    check(not errors, '%s: hdmf validation: %s' % (tag, errors[:5]))
    f = h5py.File(path, 'r')
    n_typed = structure(f)
    el = f['general/extracellular_ephys/electrodes']
    check(np.array_equal(el['id'][:], np.arange(r.n)), tag + ': electrode ids')
    check([text(x) for x in el['label'][:]] == r.labels, tag + ': electrode labels')
    check(list(np.nonzero(el['excluded'][:])[0]) == sorted(r.excluded) and el['excluded'].dtype == np.bool_,
          tag + ': excluded electrodes')
    if r.rows * r.cols == r.n:
        i = np.arange(r.n)
        check(np.array_equal(el['rel_x'][:], ((i % r.cols) * r.pitch).astype(np.float32)) and
              np.array_equal(el['rel_y'][:], ((i // r.cols) * r.pitch).astype(np.float32)), tag + ': positions')
    check(all(f[ref] == f['general/extracellular_ephys/mea'] for ref in el['group'][:]), tag + ': electrode group')
    check(text(f['general/data_collection'][()]) == r.config, tag + ': the configuration')
    notes = json.loads(text(f['general/notes'][()]))
    check(notes['losses']['torn_tail'] == r.torn, tag + ': torn tail in the notes')
    # raw
    if r.raw is not None:
        es = f['acquisition/raw']
        check(np.array_equal(es['data'][:], r.raw), tag + ': raw counts')
        check(es['data'].attrs['conversion'] == np.float32(r.uv * 1e-6), tag + ': conversion')
        check(np.array_equal(es['electrodes'][:], np.arange(r.raw.shape[1])), tag + ': raw channels')
        check(deref(f, es['electrodes'], 'table') == el, tag + ': raw electrodes table')
        contiguous = np.array_equal(r.raw_sample, r.raw_sample[0] + np.arange(len(r.raw_sample), dtype=np.uint64))
        if contiguous:
            check(es['starting_time'][()] == seconds(r, r.raw_sample[:1])[0] and
                  es['starting_time'].attrs['rate'] == np.float32(r.rate), tag + ': starting_time, rate')
        else:
            check(np.array_equal(es['timestamps'][:], seconds(r, r.raw_sample)), tag + ': raw timestamps')
    else:
        check('raw' not in f['acquisition'], tag + ': no raw series without raw')
    # units
    u = f['units']
    check(np.array_equal(u['id'][:], np.arange(r.n)), tag + ': one unit per electrode')
    check(np.array_equal(u['electrodes'][:], np.arange(r.n)) and deref(f, u['electrodes'], 'table') == el,
          tag + ': unit electrodes')
    ok = True
    for e in range(r.n):
        s = r.spikes[r.spikes['electrode'] == e]
        ok &= np.array_equal(ragged(u, 'spike_times', e), seconds(r, s['sample']))
        ok &= np.array_equal(ragged(u, 'amplitude_uv', e), s['amplitude_uv'])
        ok &= np.array_equal(ragged(u, 'spike_flags', e), s['flags'])
    check(ok and len(u['spike_times']) == np.count_nonzero(r.spikes['electrode'] < r.n),
          tag + ': spike times, amplitudes and flags per electrode')
    check(u['spike_times'].attrs['resolution'] == 1.0 / r.rate, tag + ': spike time resolution')
    # stimulation
    st = f['intervals/stimulation']
    t0 = seconds(r, r.stim['sample'])
    check(np.array_equal(column(st, 'start_time'), t0) and
          np.array_equal(column(st, 'stop_time'),
                         t0 + (2.0 * r.stim['phase_us'].astype(np.float64) + r.stim['interphase_us']) * 1e-6),
          tag + ': pulse times')
    for c, field in (('electrode', 'electrode'), ('amplitude_ua', 'amplitude_ua'), ('phase_us', 'phase_us'),
                     ('interphase_us', 'interphase_us'), ('sample', 'sample'),
                     ('requested_sample', 'requested_sample'), ('flags', 'flags')):
        check(np.array_equal(column(st, c), r.stim[field]), tag + ': pulse ' + c)
    check(np.array_equal(column(st, 'late'), (r.stim['flags'] & 1) != 0), tag + ': pulse late')
    # events
    ev = f['intervals/events']
    for c in ('sample', 'samples', 'type', 'value', 'electrode'):
        check(np.array_equal(column(ev, c), r.events[c]), tag + ': event ' + c)
    check([text(x) for x in column(ev, 'name')] == [EVENT_NAMES.get(int(t), 'type_%d' % t)
                                                     for t in r.events['type']], tag + ': event names')
    check(np.array_equal(column(ev, 'start_time'), seconds(r, r.events['sample'])) and
          np.array_equal(column(ev, 'stop_time'), seconds(r, r.events['sample'] + r.events['samples'])),
          tag + ': event times')
    refused = r.events['type'] == 8
    check([text(x) for x in column(ev, 'detail')[refused]] ==
          [REASONS.get(int(v), 'unknown reason') for v in r.events['value'][refused]], tag + ': refusal reasons')
    digital = r.events['type'] == 19
    check([text(x) for x in column(ev, 'detail')[digital]] ==
          ['high' if v else 'low' for v in r.events['value'][digital]], tag + ': digital levels')
    # trials
    want = trials(r)
    if want:
        tr = f['intervals/trials']
        check(len(tr['id']) == len(want), tag + ': %d trials of %d' % (len(tr['id']), len(want)))
        if len(tr['id']) == len(want):
            for c, key in (('start_sample', 'start'), ('stop_sample', 'stop'), ('trial', 'trial'),
                           ('item', 'item'), ('label', 'label'), ('ended', 'ended')):
                check(list(column(tr, c)) == [w[key] for w in want], tag + ': trial ' + c)
            check([text(x) for x in column(tr, 'phase')] == [PHASES.get(w['phase'], '') for w in want],
                  tag + ': trial phase')
            check(np.array_equal(column(tr, 'start_time'), seconds(r, [w['start'] for w in want])) and
                  np.array_equal(column(tr, 'stop_time'), seconds(r, [w['stop'] for w in want])),
                  tag + ': trial times')
    else:
        check('trials' not in f['intervals'], tag + ': no trials table without trials')
    lost = invalid_times(r)
    if lost:
        iv = f['intervals/invalid_times']
        check([text(x) for x in column(iv, 'reason')] == [l[0] for l in lost] and
              list(column(iv, 'start_sample')) == [l[1] for l in lost] and
              list(column(iv, 'stop_sample')) == [l[2] for l in lost] and
              np.array_equal(column(iv, 'start_time'), seconds(r, [l[1] for l in lost])) and
              np.array_equal(column(iv, 'stop_time'), seconds(r, [l[2] for l in lost])),
              tag + ': invalid_times %s' % lost)
    else:
        check('invalid_times' not in f['intervals'], tag + ': no invalid_times without losses')
    f.close()
    return '%d typed objects; hdmf: %s' % (n_typed, what)


# ---- Open Ephys ----------------------------------------------------------

def message(e):
    t, v = int(e['type']), int(e['value'])
    s = '%s value=%d' % (EVENT_NAMES.get(t, 'type_%d' % t), v)
    if e['samples']:
        s += ' samples=%d' % e['samples']
    if t in (8, 14):
        s += ' electrode=all' if e['electrode'] == 65535 else ' electrode=%d' % e['electrode']
    if t == 8:
        s += ' reason=%s' % REASONS.get(v, 'unknown')
    if t == 19:
        s += ' line=%d' % e['electrode']
    return s


def digital_edges(r):
    """Every line starts low; an edge (line + 1 rising, -(line + 1)
    falling) where a digital event says another level than the line's last."""
    out, level = [], {}
    for e in r.events[r.events['type'] == 19]:
        line, high = int(e['electrode']), int(e['value']) != 0
        if level.get(line, False) != high:
            level[line] = high
            out.append((int(e['sample']), line + 1 if high else -(line + 1)))
    return out


def ttl_edges(r):
    """Rising at a pulse's sample, falling at the sample its second phase
    ends in; falls due by a rise come before it, equal falls in the order
    their pulses rose."""
    out, due, seq = [], [], 0
    for p in r.stim:
        while due and due[0][0] <= p['sample']:
            s, _, state = heapq.heappop(due)
            out.append((s, state))
        line = int(p['electrode']) + 1
        out.append((int(p['sample']), line))
        n = math.ceil((2.0 * p['phase_us'] + p['interphase_us']) * r.rate / 1e6)
        heapq.heappush(due, (int(p['sample']) + max(n, 1), seq, -line))
        seq += 1
    while due:
        s, _, state = heapq.heappop(due)
        out.append((s, state))
    return out


def check_openephys(r, out, tag):
    rec = os.path.join(out, 'Record Node 101', 'experiment1', 'recording1')
    ob = json.load(open(os.path.join(rec, 'structure.oebin')))
    check(ob['GUI version'].startswith('0.6'), tag + ': GUI version')
    side = json.load(open(os.path.join(rec, 'mead-recording.json')))
    check(side['losses']['torn_tail'] == r.torn, tag + ': torn tail in mead-recording.json')
    if r.raw is not None:
        io = OpenEphysBinaryRawIO(dirname=out)
        io.parse_header()
        check(io.signal_streams_count() == 1, tag + ': one signal stream')
        chans = io.header['signal_channels']
        check(list(chans['name']) == r.labels[:r.raw.shape[1]], tag + ': channel names')
        check(np.all(chans['gain'] == r.uv) and np.all(chans['units'] == 'uV'), tag + ': gain uV per count')
        n = io.get_signal_size(0, 0, 0)
        check(n == len(r.raw), tag + ': %d frames of %d' % (n, len(r.raw)))
        check(np.array_equal(io.get_analogsignal_chunk(0, 0, 0, n, 0), r.raw), tag + ': Neo reads the raw counts')
        check(io.get_signal_t_start(0, 0, 0) == r.raw_sample[0] / r.rate, tag + ': t_start')
        d = os.path.join(rec, 'continuous', ob['continuous'][0]['folder_name'])
        check(np.array_equal(np.load(os.path.join(d, 'sample_numbers.npy')), r.raw_sample.astype(np.int64)),
              tag + ': sample numbers')
        check(np.array_equal(np.load(os.path.join(d, 'timestamps.npy')), seconds(r, r.raw_sample)),
              tag + ': timestamps')
        names = list(io.header['event_channels']['name'])
        i = names.index('Messages')
        ts, _, labels = io.get_event_timestamps(0, 0, i)
        check(np.array_equal(io.rescale_event_timestamp(ts, 'float64', i), seconds(r, r.events['sample'])),
              tag + ': Neo reads the event times')
        check(list(labels) == [message(e) for e in r.events], tag + ': Neo reads the event texts')
        if len(r.stim):
            i = names.index('stimulation')
            ts, dur, labels = io.get_event_timestamps(0, 0, i)
            check(np.array_equal(io.rescale_event_timestamp(ts, 'float64', i), seconds(r, r.stim['sample'])),
                  tag + ': Neo reads the pulse times')
            check(list(labels) == [str(int(e) + 1) for e in r.stim['electrode']], tag + ': Neo reads the lines')
            # Neo pairs the n-th fall with the n-th rise: right when pulses end in the order they began
            edges = ttl_edges(r)
            rises = [e for e in edges if e[1] > 0]
            falls = [e for e in edges if e[1] < 0]
            if [e[1] for e in rises] == [-e[1] for e in falls]:
                want = seconds(r, [e[0] for e in falls]) - seconds(r, [e[0] for e in rises])
                check(dur is not None and np.array_equal(dur, want), tag + ': Neo reads the pulse durations')
        edges = digital_edges(r)
        if edges:
            i = names.index('digital inputs')
            ts, dur, labels = io.get_event_timestamps(0, 0, i)
            rises = [e for e in edges if e[1] > 0]
            check(np.array_equal(io.rescale_event_timestamp(ts, 'float64', i), seconds(r, [e[0] for e in rises])),
                  tag + ': Neo reads the digital rising edges')
            check(list(labels) == [str(e[1]) for e in rises], tag + ': Neo reads the digital lines')
        else:
            check('digital inputs' not in names, tag + ': no digital event channel without digital events')
    else:
        check(ob['continuous'] == [], tag + ': no continuous stream without raw')
    d = os.path.join(rec, 'events', 'MessageCenter')
    check(np.array_equal(np.load(os.path.join(d, 'sample_numbers.npy')), r.events['sample'].astype(np.int64)) and
          [x.decode() for x in np.load(os.path.join(d, 'text.npy'))] == [message(e) for e in r.events],
          tag + ': messages')
    if len(r.stim):
        d = os.path.join(rec, 'events', 'mead-100.acquisition', 'TTL')
        edges = ttl_edges(r)
        check(np.array_equal(np.load(os.path.join(d, 'sample_numbers.npy')), np.array([e[0] for e in edges])) and
              np.array_equal(np.load(os.path.join(d, 'states.npy')), np.array([e[1] for e in edges], np.int16)) and
              np.array_equal(np.load(os.path.join(d, 'timestamps.npy')), seconds(r, [e[0] for e in edges])),
              tag + ': TTL states, sample numbers, timestamps')
    d = os.path.join(rec, 'events', 'mead-100.acquisition', 'TTL_1')
    edges = digital_edges(r)
    if edges:
        check(np.array_equal(np.load(os.path.join(d, 'sample_numbers.npy')), np.array([e[0] for e in edges])) and
              np.array_equal(np.load(os.path.join(d, 'states.npy')), np.array([e[1] for e in edges], np.int16)) and
              np.array_equal(np.load(os.path.join(d, 'timestamps.npy')), seconds(r, [e[0] for e in edges])),
              tag + ': digital input TTL states, sample numbers, timestamps')
    else:
        check(not os.path.exists(d), tag + ': no digital input folder without digital events')
    ok = True
    for e, sp in enumerate(ob['spikes']):
        d = os.path.join(rec, 'spikes', sp['folder'])
        s = r.spikes[r.spikes['electrode'] == e]['sample']
        ok &= np.array_equal(np.load(os.path.join(d, 'sample_numbers.npy')), s.astype(np.int64))
        ok &= np.array_equal(np.load(os.path.join(d, 'timestamps.npy')), seconds(r, s))
        ok &= np.array_equal(np.load(os.path.join(d, 'electrode_indices.npy')), np.full(len(s), e, np.uint16))
        ok &= np.load(os.path.join(d, 'waveforms.npy')).shape == (len(s), 1, 0)
    check(ok and len(ob['spikes']) == r.n, tag + ': spikes per electrode')


# ---- driver ---------------------------------------------------------------

def export(tool, rec, fmt, out):
    p = subprocess.run([tool, rec, '--to', fmt, '-o', out], capture_output=True, text=True)
    return p


def cli(tool, rec, work, nwb_built):
    """Progress lines on request (stderr here is a pipe, so none by default);
    an existing export is not overwritten unless asked."""
    oe = os.path.join(work, 'cli.openephys')
    p = subprocess.run([tool, rec, '--to', 'openephys', '-o', oe, '--progress'], capture_output=True, text=True)
    check(p.returncode == 0 and 'writing Open Ephys 100%' in p.stderr, 'progress lines with --progress: %r' % p.stderr)
    p = subprocess.run([tool, rec, '--to', 'openephys', '-o', oe], capture_output=True, text=True)
    check(p.returncode != 0 and 'exists' in p.stderr, 'an existing folder refused: %r' % p.stderr)
    p = subprocess.run([tool, rec, '--to', 'mat', '-o', oe], capture_output=True, text=True)
    check(p.returncode == 2 and 'not supported' in p.stderr, 'an unknown format named: %r' % p.stderr)
    if not nwb_built:
        return
    out = os.path.join(work, 'cli.nwb')
    p = subprocess.run([tool, rec, '--to', 'nwb', '-o', out, '--progress'], capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if re.match(r'^mead-export: (reading|writing NWB) +\d+% ', l)]
    check(p.returncode == 0 and any('reading 100%' in l for l in lines) and any('writing NWB 100%' in l for l in lines),
          'progress lines with --progress: %r' % p.stderr)
    p = subprocess.run([tool, rec, '--to', 'nwb', '-o', out], capture_output=True, text=True)
    check(p.returncode != 0 and 'exists' in p.stderr, 'an existing NWB file kept: %r' % p.stderr)
    p = subprocess.run([tool, rec, '--to', 'nwb', '-o', out, '--force'], capture_output=True, text=True)
    check(p.returncode == 0 and p.stderr == '', 'replaced with --force, no progress lines on a pipe: %r' % p.stderr)


def main():
    tool, work, recs = sys.argv[1], sys.argv[2], sys.argv[3:]
    cat, core = catalog(work)
    nwb_built = 'without HDF5' not in export(tool, '/dev/null', 'nwb', os.path.join(work, 'x.nwb')).stderr
    if not nwb_built:
        print('note: this mead-export was built without HDF5 (libhdf5-dev): the NWB export is not checked')
    elif not core:
        print('note: no copy of the NWB core schema ($NWB_SCHEMA_DIR, pynwb): the core types are checked '
              'structurally, the tables against hdmf-common')
    rng = random.Random(16)
    for rec in recs:
        cases = [(rec, os.path.basename(rec))]
        size = os.path.getsize(rec)
        r0 = decode(rec)
        lossy = os.path.join(work, 'losses-' + os.path.basename(rec))
        with_losses(rec, lossy)
        cases.append((lossy, os.path.basename(rec) + ' with every loss and refusal event'))
        for k in range(5):
            cut = rng.randrange(r0.header_len + 1, size)
            path = os.path.join(work, 'cut%d-%s' % (k, os.path.basename(rec)))
            with open(rec, 'rb') as a, open(path, 'wb') as b:
                b.write(a.read(cut))
            cases.append((path, '%s cut at byte %d of %d' % (os.path.basename(rec), cut, size)))
        for path, tag in cases:
            r = decode(path)
            nwb = path + '.nwb'
            what = 'NWB not built'
            p = export(tool, path, 'nwb', nwb) if nwb_built else None
            if p and check(p.returncode == 0, tag + ': nwb export: ' + p.stderr.strip()):
                check(('torn record' in p.stdout) == r.torn, tag + ': the nwb export says the tail was torn')
                what = check_nwb(r, nwb, cat, core, work, tag)
            oe = path + '.openephys'
            p = export(tool, path, 'openephys', oe)
            if check(p.returncode == 0, tag + ': openephys export: ' + p.stderr.strip()):
                check(('torn record' in p.stdout) == r.torn, tag + ': the openephys export says the tail was torn')
                check_openephys(r, oe, tag)
            print('%s: %d spikes, %d pulses, %d events, %d trials, %s raw frames%s; %s' % (
                tag, len(r.spikes), len(r.stim), len(r.events), len(trials(r)),
                len(r.raw) if r.raw is not None else 'no', ', torn' if r.torn else '', what))
        # a file cut inside its header is refused, by name
        path = os.path.join(work, 'header-' + os.path.basename(rec))
        with open(rec, 'rb') as a, open(path, 'wb') as b:
            b.write(a.read(r0.header_len - 3))
        for fmt in ('nwb', 'openephys') if nwb_built else ('openephys',):
            p = export(tool, path, fmt, path + '.' + fmt)
            check(p.returncode != 0 and 'header' in p.stderr and not os.path.exists(path + '.' + fmt),
                  '%s: a cut header refused (%s): %s' % (path, fmt, p.stderr.strip()))
    cli(tool, recs[0], work, nwb_built)
    if failures:
        print('%d checks failed' % len(failures))
        sys.exit(1)
    print('ok')


if __name__ == '__main__':
    main()
