"""``python -m training.ppo``: ``train-ppo``."""

import sys

from training.ppo.trainer import main

sys.exit(main())
