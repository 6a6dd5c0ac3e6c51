import csv, json, glob, statistics as st
def val(d):
    try:
        rows=list(csv.DictReader(open(f'/tmp/h13/{d}/metrics.csv')))
    except FileNotFoundError: return None
    v=[r for r in rows if r.get('val/reward')]
    tr=[r for r in rows if r.get('train/reward')]
    return (len(tr), [(int(r['step']), round(float(r['val/reward']),3), round(float(r['val/correct']),3), round(float(r['val/frac_unparseable']),3)) for r in v],
            round(st.mean(float(r['train/frac_zero_std_groups']) for r in tr),3) if tr else None)
def rep(d):
    f=glob.glob(f'/tmp/h13/{d}/eval/*/report.json')
    if not f: return None
    j=json.load(open(f[0]))
    o=j.get('overall', j)
    return {k: o.get(k) for k in ('TS','PI','CF','DE','CE','VA','success') if k in o}
for d in ['grpo_s0','grpo_s1','grpo_s2','grpo_s1b']:
    print(d, val(d), rep('eval_'+d))
print('sft single', rep('eval_sft_single2'), 'sft multi', rep('eval_sft_multi'))
for d in ['mt_s0','mt_s1','mt_s0b','mt_s1b']:
    print(d, rep('eval_'+d))
