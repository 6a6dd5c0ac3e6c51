"""Record score reports for every public set x mode, gold and perturbed predictions."""
import json, subprocess, sys, os, random
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
B = "/work/shared/benchmarks"
sets = [("rotbench", f"{B}/rotbench", c) for c in ("clean","slight","medium","heavy","union")]
sets += [("toolalpaca", f"{B}/toolalpaca", None), ("bfcl", f"{B}/bfcl_v3_exec", None), ("tooleyes", f"{B}/tooleyes", None),
         ("synthetic", "quickstart", "single"), ("synthetic", "quickstart", "multi")]
def run(args):
    r = subprocess.run([sys.executable, "-m", "tl_lightning", "score", *args], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr
def perturb(rows):
    rng = random.Random(0); res = []
    for i, row in enumerate(rows):
        row = json.loads(json.dumps(row))
        if i % 3 == 1:
            if "output" in row and isinstance(row["output"], str):
                s = row["output"]; k = rng.randrange(max(1, len(s)))
                row["output"] = s[:k] + s[k+1:]
            elif "turns" in row and row["turns"]:
                t = row["turns"]; j = rng.randrange(len(t))
                if isinstance(t[j], str): t[j] = t[j].replace("=", "= ", 1)[:-2]
                else: t[j]["output"] = t[j]["output"][:-3]
        if i % 7 == 3: continue
        res.append(row)
    return res
for name, data, cat in sets:
    tag = f"{name}_{cat or 'all'}"
    base = ["--benchmark", name, "--data", data] + (["--category", cat] if cat else [])
    gold = out / f"{tag}.gold.jsonl"
    rc, log = run(base + ["--write-gold", str(gold)]); print(tag, "gold", rc, log.strip()[-200:])
    rows = [json.loads(l) for l in gold.read_text().splitlines() if l.strip()]
    pert = out / f"{tag}.pert.jsonl"
    pert.write_text("".join(json.dumps(r) + "\n" for r in perturb(rows)))
    for mode in ("official", "corrected", "bfcl"):
        for kind, preds in (("gold", gold), ("pert", pert)):
            d = out / f"{tag}.{mode}.{kind}"
            rc, log = run(base + ["--predictions", str(preds), "--mode", mode, "--output", str(d)])
            (out / f"{tag}.{mode}.{kind}.log").write_text(f"rc={rc}\n{log}")
            print(tag, mode, kind, rc, log.strip().splitlines()[0][:120] if log.strip() else "")
