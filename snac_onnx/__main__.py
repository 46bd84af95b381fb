"""``python -m snac_onnx`` runs the ``snac-onnx`` command line."""

import sys

from .cli import main

sys.exit(main())
