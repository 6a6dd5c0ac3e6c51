"""Can this training path learn in-context copying at all? A 2-layer LLaMA on random-token spans repeated 3 times,
300 steps, plain batches and packed rows (scripts/pretrain_base.py's collate and loss): loss on the first copy vs the repeats.

    python results/2026-11-30/base_model/induction/toy_induction.py    # run from the repository root
"""
import importlib.util, random, sys, time
import numpy as np, torch, torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
spec = importlib.util.spec_from_file_location("pb", "scripts/pretrain_base.py"); pb = importlib.util.module_from_spec(spec); spec.loader.exec_module(pb)
torch.set_num_threads(1)
V, K = 512, 24
def doc(rng):
    span = [rng.randrange(3, V) for _ in range(K)]
    return np.array([0] + span + span + span, dtype=np.int64)
def run(packed, steps=300, seed=0):
    torch.manual_seed(seed); rng = random.Random(seed)
    m = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                     intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    for s in range(steps):
        docs = [doc(rng) for _ in range(16)]
        if packed:  # 4 docs per row, positions restart: the pretraining path
            b = pb.collate(docs, [list(range(i, i + 4)) for i in range(0, 16, 4)], 4 * len(docs[0]), 2)
            loss = pb.lm_loss(m, b)
        else:
            ids = torch.tensor(np.stack(docs))
            logits = m(input_ids=ids, use_cache=False).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad(); loss.backward(); opt.step()
    m.eval(); rng = random.Random(999); d = torch.tensor(np.stack([doc(rng) for _ in range(32)]))
    with torch.no_grad():
        nll = F.cross_entropy(m(input_ids=d).logits[:, :-1].transpose(1, 2), d[:, 1:], reduction="none")
    return nll[:, : K].mean().item(), nll[:, K:].mean().item()
for packed in (False, True):
    t = time.time(); f, r = run(packed)
    print(f"packed={packed}: first copy {f:.2f}, repetitions {r:.2f} nats/token ({time.time() - t:.0f} s)", flush=True)
