"""Independent check of one swept variant on SmolLM2-135M / CounterFact: truncate the matrix in transformers'
own PyTorch model (exact torch SVD, float64) and score the first N items; compare with the sweep's per-example
scores (base and variant) from a `laser-jax sweep` run directory.

    python experiments/check_counterfact_smollm2_variant.py N RUN_DIR TAU LAYER RHO
    e.g. python experiments/check_counterfact_smollm2_variant.py 767 experiments/results/counterfact_smollm2/L28-29 fc_up 28 0.2
"""
import csv, sys, numpy as np, torch
from transformers import AutoModelForCausalLM
from laser_jax.gguf import smollm2_path
from laser_jax.tasks import get_task
N = int(sys.argv[1]); RUN = sys.argv[2]; TAU = sys.argv[3]; LAYER, RHO = int(sys.argv[4]), float(sys.argv[5])
HF = {"fc_in": "gate_proj", "fc_up": "up_proj", "fc_out": "down_proj"}[TAU]
torch.set_num_threads(2)
p = smollm2_path()
ref = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
task = get_task("counterfact"); items = task.load("../shared/data/counterfact/counterfact-val.json")[:N]
ex = task.examples(items, tok)
def score():
    top1, nll = [], []
    with torch.inference_mode():
        for b in range(0, N, 64):
            rows = ex[b:b+64]; seqs = [list(e.prompt_ids)+list(e.answer_ids) for e in rows]
            L = max(map(len, seqs)); ids = torch.zeros(len(seqs), L, dtype=torch.long); m = torch.zeros_like(ids)
            for r, s in enumerate(seqs): ids[r,:len(s)] = torch.tensor(s); m[r,:len(s)] = 1
            lp = torch.log_softmax(ref(input_ids=ids, attention_mask=m).logits.float(), -1)
            for r, e in enumerate(rows):
                P = len(e.prompt_ids); a = list(e.answer_ids)
                top1.append(int(lp[r, P-1].argmax()) == a[0]); nll.append(-float(lp[r, torch.arange(P-1, P-1+len(a)), torch.tensor(a)].mean()))
    return np.array(top1), np.array(nll)
def sweep_scores(name):
    rows = list(csv.DictReader(open(f"{RUN}/scores/{name}.csv")))[:N]
    return np.array([int(r["top1"]) for r in rows], bool), np.array([float(r["answer_nll"]) for r in rows])
t0, n0 = score(); s0, sn0 = sweep_scores("base")
W = getattr(ref.model.layers[LAYER].mlp, HF).weight.data
k = int(RHO * min(W.shape)); U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
getattr(ref.model.layers[LAYER].mlp, HF).weight.data = ((U[:, :k] * S[:k]) @ Vh[:k]).float()
t1, n1 = score(); s1, sn1 = sweep_scores(f"{TAU}-L{LAYER}-rho{RHO!r}")
print(f"{TAU} layer {LAYER} rho {RHO}: first {N} items, k={k}")
print(f"base   : torch top1 {t0.sum()} nll {n0.mean():.5f} | sweep top1 {s0.sum()} nll {sn0.mean():.5f} | disagree {(t0!=s0).sum()} max|dnll| {np.abs(n0-sn0).max():.2e}")
print(f"variant: torch top1 {t1.sum()} nll {n1.mean():.5f} | sweep top1 {s1.sum()} nll {sn1.mean():.5f} | disagree {(t1!=s1).sum()} max|dnll| {np.abs(n1-sn1).max():.2e}")
