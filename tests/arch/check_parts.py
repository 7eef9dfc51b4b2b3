#!/usr/bin/python3
"""Who may know whom: the map of docs/architecture.md, checked.

Two rules, for every part of the tree:
  1. a source or header includes only the project headers of the parts it
     may know (every project include is written from the repository root,
     "lib/core/json.h", or is a public "mead/..." header);
  2. a build target compiles only sources below the folder whose
     meson.build defines it: code is shared through the libraries under
     lib/, never by compiling another part's files (read from meson's
     introspection of the build).

usage: check_parts.py SOURCE_ROOT [BUILD_ROOT]
       check_parts.py --self-test
Exits 1 and names every violation; 0 when the tree keeps the map.
"""
import json
import os
import re
import sys
import tempfile

# part -> the parts it may include from.  A part is a folder; the longest
# matching prefix names a file's part.  include/mead holds the public ABI
# and wire headers, "build-config" is the generated mead-build-config.h.
MAY_KNOW = {
    'include/mead': set(),
    'lib/core': {'include/mead'},
    'lib/cfg': {'lib/core'},
    'lib/signal': {'include/mead', 'lib/core'},
    'sim': {'lib/core'},
    'protocol': {'include/mead', 'lib/core', 'lib/cfg'},
    'config': {'include/mead', 'lib/core', 'lib/cfg', 'protocol/protocol_config.h', 'build-config'},
    'daemon': {'include/mead', 'lib/core', 'lib/cfg', 'config', 'protocol', 'build-config'},
    'drivers/null': {'include/mead', 'lib/core'},
    'drivers/replay': {'include/mead', 'lib/core'},
    'drivers/twin': {'include/mead', 'lib/core', 'sim'},
    'drivers/comedi': {'include/mead', 'lib/core', 'lib/signal'},
    'drivers/usb': {'include/mead', 'lib/core', 'lib/signal'},
    'readout': {'include/mead', 'lib/core', 'build-config'},
    'view': {'include/mead', 'lib/core', 'lib/signal', 'build-config'},
    'gadget': {'lib/core'},
    'tools': {'include/mead', 'lib/core', 'lib/cfg', 'config', 'protocol/protocol_config.h', 'sim', 'build-config'},
    'bench': {'include/mead', 'lib/core', 'lib/cfg', 'lib/signal', 'config', 'protocol', 'daemon', 'sim',
              'tests/lib', 'build-config', 'bench'},
    'tests/lib': {'include/mead', 'lib/core'},
    # the tests may exercise anything, but link it: rule 2 still holds
    'tests': {'*'},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SOURCE_EXT = ('.c', '.h')


def part_of(rel):
    best = None
    for p in MAY_KNOW:
        if rel == p or rel.startswith(p + '/'):
            if best is None or len(p) > len(best):
                best = p
    return best


def target_of_include(inc):
    """The part (or exact file) an include names, and the path it names."""
    if inc == 'mead-build-config.h':
        return 'build-config', None
    if inc.startswith('mead/'):
        return 'include/mead', 'include/' + inc
    return part_of(inc), inc


def allowed(src_part, inc_part, inc_path):
    rules = MAY_KNOW[src_part]
    if '*' in rules or inc_part == src_part:
        return True
    if inc_part in rules:
        return True
    return inc_path is not None and inc_path in rules


def tracked_sources(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if not d.startswith('.') and not d.startswith('build') and d != 'data']
        for f in filenames:
            if f.endswith(SOURCE_EXT):
                yield os.path.normpath(os.path.join(rel_dir, f))


def check_includes(root):
    errors = []
    for rel in sorted(tracked_sources(root)):
        part = part_of(rel)
        if part is None:
            continue
        with open(os.path.join(root, rel), encoding='utf-8', errors='replace') as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            line = text.count('\n', 0, m.start()) + 1
            inc_part, inc_path = target_of_include(inc)
            if inc_part is None or (inc_path and not os.path.exists(os.path.join(root, inc_path))):
                errors.append('%s:%d: #include "%s" names no project header from the repository root '
                              '(write it as "part/file.h")' % (rel, line, inc))
                continue
            if not allowed(part, inc_part, inc_path):
                errors.append('%s:%d: %s may not include "%s" (%s knows: %s)' % (
                    rel, line, part, inc, part, ', '.join(sorted(MAY_KNOW[part])) or 'nothing'))
    return errors


def check_targets(root, build):
    errors = []
    path = os.path.join(build, 'meson-info', 'intro-targets.json')
    with open(path) as f:
        targets = json.load(f)
    root = os.path.realpath(root)
    for t in targets:
        defined = os.path.relpath(os.path.dirname(os.path.realpath(t['defined_in'])), root)
        for ts in t.get('target_sources', []):
            for src in ts.get('sources', []):
                rel = os.path.relpath(os.path.realpath(src), root)
                if rel.startswith('..'):
                    continue  # generated in the build tree
                if rel.startswith(defined + '/'):
                    continue
                errors.append('%s (%s, defined in %s/meson.build) compiles %s, a file of %s: '
                              'link that part\'s library instead' % (
                                  t['name'], t['type'], defined, rel, part_of(rel) or 'no part'))
    return errors


def self_test():
    """The checker must catch what it claims to catch."""
    with tempfile.TemporaryDirectory() as d:
        def write(rel, text):
            os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(d, rel), 'w') as f:
                f.write(text)
        write('daemon/loop.h', '#pragma once\n')
        write('lib/core/json.h', '#pragma once\n')
        write('readout/bad.c', '#include "daemon/loop.h"\n#include "lib/core/json.h"\n')
        write('drivers/usb/usb.c', '#include "../signal/signal.h"\n')
        write('lib/core/ok.c', '#include "lib/core/json.h"\n#include "mead/driver.h"\n')
        write('include/mead/driver.h', '#pragma once\n')
        errs = check_includes(d)
        want = ['readout/bad.c:1:', 'drivers/usb/usb.c:1:']
        if len(errs) != 2 or not all(any(e.startswith(w) for e in errs) for w in want):
            print('self-test: includes: expected 2 violations, got:\n  ' + '\n  '.join(errs))
            return 1
        os.makedirs(os.path.join(d, 'b', 'meson-info'))
        with open(os.path.join(d, 'b', 'meson-info', 'intro-targets.json'), 'w') as f:
            json.dump([{'name': 'mead-readout', 'type': 'executable',
                        'defined_in': os.path.join(d, 'readout', 'meson.build'),
                        'target_sources': [{'sources': [os.path.join(d, 'readout', 'bad.c'),
                                                        os.path.join(d, 'daemon', 'json.c')]}]}], f)
        errs = check_targets(d, os.path.join(d, 'b'))
        if len(errs) != 1 or 'daemon/json.c' not in errs[0]:
            print('self-test: targets: expected 1 violation, got:\n  ' + '\n  '.join(errs))
            return 1
    print('self-test: both rules catch their violations')
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == '--self-test':
        return self_test()
    if len(argv) not in (2, 3):
        print(__doc__.strip().split('\n\n')[-1], file=sys.stderr)
        return 2
    root = argv[1]
    errors = check_includes(root)
    if len(argv) == 3:
        errors += check_targets(root, argv[2])
    for e in errors:
        print(e)
    if errors:
        print('%d violation%s of the map in docs/architecture.md' % (len(errors), '' if len(errors) == 1 else 's'))
        return 1
    print('every part includes and compiles only what it may know')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
