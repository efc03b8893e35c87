"""The paper's run (Chen, Bruna & Bietti, ``script_k1_noise05.sh``): d = T = 256, batch 512, 5,000 steps. GPU.

    python experiments/synthetic_paper.py [--out experiments/results/synthetic_paper] [--stats shakespeare]

Uses the paper's Tiny-Shakespeare statistics (../shared/data/synthetic/shakespeare_char_stats.json);
pass ``--stats builtin`` where that file is absent. Checkpoints at steps 1,000 and 5,000.
"""

import sys

from synthetic.run import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", "experiments/results/synthetic_paper"]
    main(["--preset", "paper", *args])
