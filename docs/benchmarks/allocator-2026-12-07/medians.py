import json,statistics as st
def load(r): return json.load(open(f"{r}.json"))
sets={
 'before (bd8ed7e)':['P-b-1','P-b-2','P-b-3'],
 'glibc (385327d)':['g-1','g-2','g-3','g-4','g-5','P-g-1','P-g-2'],
 'mimalloc (mn, ma, P-n)':['mn-3','mn-4','mn-5','mn-6','ma-5','ma-6','P-n-1','P-n-2','P-n-3'],
 'mimalloc, paired':['P-n-1','P-n-2','P-n-3'],
}
data={k:[load(r) for r in v] for k,v in sets.items()}
phases=[('single','get'),('single','list20'),('single','create'),('mixed','list'),('mixed','get'),('mixed','create'),('mixed','patch'),('mixed','delete')]+[('list_filters',f) for f in ['plain','not_done','label','by_priority','by_due','due_before','due_early','label_rare','q']]
print('| phase | '+' | '.join(sets)+' |')
for a,b in phases:
    row=[]
    for k in sets:
        vals=[d[a][b]['per_second'] for d in data[k]]
        row.append("%.0f (%.0f–%.0f)"%(st.median(vals),min(vals),max(vals)))
    bm=st.median([d[a][b]['per_second'] for d in data['before (bd8ed7e)']])
    gm=st.median([d[a][b]['per_second'] for d in data['glibc (385327d)']])
    mm=st.median([d[a][b]['per_second'] for d in data['mimalloc (mn, ma, P-n)']])
    pm=st.median([d[a][b]['per_second'] for d in data['mimalloc, paired']])
    print(f"| {a}.{b} | "+" | ".join(row)+f" | g/b {gm/bm:.2f} m/g {mm/gm:.2f} m/b {mm/bm:.2f} paired {pm/bm:.2f}")
for k in sets:
    print(k, 'rss task', [d['rss_kib']['task_server']//1024 for d in data[k]], 'ceiling', [round(d['ceiling_constant']['per_second']/1000) for d in data[k]])
