"""The paper's run (Chen, Bruna & Bietti, ``script_k1_noise05.sh``): d = T = 256, batch 512, 5,000 steps. GPU.

    python experiments/synthetic_paper.py [--out experiments/results/synthetic_paper] [--seeds 1]

Uses the paper's Tiny-Shakespeare statistics (shipped with the package). Trains 3 seeds
together (``--seeds 1``: one, as the official script); logs every 10 steps through step
1,000, then every 100. Checkpoints at steps 1,000 and 5,000.
"""

import sys

from synthetic.run import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", "experiments/results/synthetic_paper"]
    sys.exit(main(["--preset", "paper", *args]))
