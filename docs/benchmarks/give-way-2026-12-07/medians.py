# Medians of the load harness's reports in this folder: `before-*` the version
# before session 31 (efebc9b), `after-*` after it (d69be43), run in turn.
import json, statistics as st
def load(r): return json.load(open(f"{r}.json"))
sets = {'before (efebc9b)': ['before-1', 'before-2', 'before-3', 'before-4'], 'after (d69be43)': ['after-1', 'after-2', 'after-3', 'after-4']}
data = {k: [load(r) for r in v] for k, v in sets.items()}
phases = [('single', 'get'), ('single', 'list20'), ('single', 'create'), ('mixed', 'list'),
          ('mixed', 'get'), ('mixed', 'create')] + \
         [('list_filters', f) for f in ['plain', 'not_done', 'label', 'by_priority', 'by_due',
                                         'due_before', 'due_early', 'label_rare', 'q']]
print('| phase | ' + ' | '.join(sets) + ' | after / before |')
print('|---|' + '---|' * (len(sets) + 1))
for a, b in phases:
    meds = []
    row = []
    for k in sets:
        vals = [d[a][b]['per_second'] for d in data[k]]
        meds.append(st.median(vals))
        row.append("%.0f (%s)" % (st.median(vals), " / ".join("%.0f" % v for v in vals)))
    print(f"| {a}.{b} | " + " | ".join(row) + f" | {meds[1] / meds[0]:.2f} |")
for k in sets:
    print(k, 'task-server RSS MiB', [d['rss_kib']['task_server'] // 1024 for d in data[k]],
          'ceiling k/s', [round(d['ceiling_constant']['per_second'] / 1000) for d in data[k]])
