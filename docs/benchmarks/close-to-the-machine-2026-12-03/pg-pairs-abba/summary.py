#!/usr/bin/env python3
"""Paired comparison of load reports: summary.py DIR (DIR/before-N.json, DIR/after-N.json)."""
import json, sys, glob, os, statistics as st
d = sys.argv[1]
pairs = []
for b in sorted(glob.glob(os.path.join(d, 'before-*.json'))):
    n = b.rsplit('-', 1)[1]
    a = os.path.join(d, 'after-' + n)
    if os.path.exists(a):
        pairs.append((json.load(open(b)), json.load(open(a))))
def metrics(r):
    m = {}
    m['constant /s'] = r['ceiling_constant']['per_second']
    for k, v in r['single'].items():
        m[f'{k} /s'] = v['per_second']; m[f'{k} p99'] = v['p99_ms']; m[f'{k} p50'] = v['p50_ms']
        if 'ratio_to_constant' in v: m[f'{k} ratio'] = v['ratio_to_constant']
    for k, v in r.get('mixed', {}).items():
        m[f'mixed {k} p99'] = v['p99_ms']; m[f'mixed {k} /s'] = v['per_second']
    m['login /s'] = r['login']['per_second']
    m['login/argon2'] = r['login']['per_second'] / r['ceiling_argon2_per_second']
    rf = r.get('read_under_login_flood', {}).get('reads', {})
    if rf: m['flood reads p99'] = rf['p99_ms']
    for k, v in r.get('list_filters', {}).items():
        m[f'list {k} p50'] = v['p50_ms']; m[f'list {k} p99'] = v['p99_ms']
    for k, v in r['rss_kib'].items():
        m[f'rss {k} MiB'] = v / 1024
    return m
print(f'{len(pairs)} pairs')
keys = list(metrics(pairs[0][1]).keys())
lower_better = lambda k: 'p99' in k or 'p50' in k or 'rss' in k
print(f"{'metric':28} {'before med':>10} {'after med':>10} {'paired med':>10} worse>5%")
for k in keys:
    bs = [metrics(b).get(k) for b, a in pairs]; as_ = [metrics(a).get(k) for b, a in pairs]
    if None in bs or None in as_: continue
    ch = [(a - b) / b * 100 if b else 0 for b, a in zip(bs, as_)]
    worse = sum(1 for c in ch if (c > 5 if lower_better(k) else c < -5))
    print(f'{k:28} {st.median(bs):10.2f} {st.median(as_):10.2f} {st.median(ch):+9.1f}% {worse}/{len(pairs)}')
