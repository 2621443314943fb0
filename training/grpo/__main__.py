"""``python -m training.grpo``: ``train-grpo`` (what ``accelerate launch -m training.grpo`` runs)."""

import sys

from training.grpo.trainer import main

sys.exit(main())
