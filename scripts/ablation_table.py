"""Summarise scripts/ablate_real.sh: mean ± spread over seeds of KITTI AP50 and CamVid mIoU per (initialisation,
label fraction), and the paired MIM-vs-scratch / MIM-vs-COCO differences; writes docs/results/ablation_real.json
(the README's table: `mim-perception docs`) and prints the table.
Usage: python scripts/ablation_table.py WORK/ablation [OUT_JSON]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mim_perception.evaluation.ablation import ablation_markdown, collect

# ablate_real.sh ends by calling this script: its command is the one that reproduces the table
COMMAND = 'INITS="mim coco scratch" scripts/ablate_real.sh DATA'


def main(root: Path, out: Path) -> None:
    doc = collect(root, COMMAND)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(ablation_markdown(doc))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/results/ablation_real.json"))
