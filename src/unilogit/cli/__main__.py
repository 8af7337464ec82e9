"""``python -m unilogit.cli`` (and ``accelerate launch -m unilogit.cli``)."""

import sys

from .main import main

sys.exit(main())
