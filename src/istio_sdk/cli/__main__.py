"""``python -m istio_sdk.cli``: the ``istio-sdk`` command without the console script."""

import sys

from istio_sdk.cli import main

sys.exit(main())
