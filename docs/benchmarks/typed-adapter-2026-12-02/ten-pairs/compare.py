import json,glob,statistics,sys
d=sys.argv[1] if len(sys.argv)>1 else '/work/pairs/out'
def load(side): return [json.load(open(f)) for f in sorted(glob.glob(f'{d}/{side}-*.json'))]
B,A=load('before'),load('after')
def g(r,path):
    for p in path.split('.'): r=r[p]
    return r
keys=[]
for ph in ['single.get','single.list20','single.create']:
    for m in ['per_second','ratio_to_constant','p50_ms','p99_ms','p999_ms']: keys.append(f'{ph}.{m}')
for ph in ['mixed.get','mixed.list','mixed.create','mixed.patch','mixed.delete']:
    for m in ['per_second','p99_ms','p999_ms']: keys.append(f'{ph}.{m}')
keys+=['login.per_second','login.p99_ms','read_under_login_flood.reads.per_second','read_under_login_flood.reads.p99_ms','rss_kib.task_server_peak','rss_kib.auth_server_peak','ceiling_constant.per_second','ceiling_argon2_per_second']
print(f'{len(B)} before, {len(A)} after')
worse=[]
for k in keys:
    b=statistics.median(g(r,k) for r in B); a=statistics.median(g(r,k) for r in A)
    higher_better = not (k.endswith('_ms') or 'rss' in k)
    ch=(a-b)/b*100 if b else 0
    bad = (ch < -5) if higher_better else (ch > 5)
    if bad and 'ceiling' not in k: worse.append(k)
    print(f'{k:45s} {b:12.3f} {a:12.3f} {ch:+7.1f}% {"WORSE" if bad else ""}')
lb=statistics.median(g(r,'login.per_second')/g(r,'ceiling_argon2_per_second') for r in B)
la=statistics.median(g(r,'login.per_second')/g(r,'ceiling_argon2_per_second') for r in A)
print(f'login/argon2 {lb:.3f} {la:.3f}')
print('worse by >5%:', worse)
print()
print('paired: median of after_i/before_i, and how many pairs worse by >5%')
n=min(len(A),len(B))
for k in keys:
    if 'ceiling' in k: continue
    rs=[g(A[i],k)/g(B[i],k) for i in range(n) if g(B[i],k)]
    if not rs: continue
    m=statistics.median(rs)
    higher_better = not (k.endswith('_ms') or 'rss' in k)
    bad = (m<0.95) if higher_better else (m>1.05)
    nb = sum(1 for r in rs if (r<0.95 if higher_better else r>1.05))
    print(f'{k:45s} {m:7.3f} worse-pairs {nb}/{n} {"WORSE" if bad else ""}')
