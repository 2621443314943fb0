"""``python -m training.sft``: ``train-sft`` (what ``accelerate launch -m training.sft`` runs)."""

import sys

from training.sft.trainer import main

sys.exit(main())
