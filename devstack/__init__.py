"""Local development stack: stand-ins for Stripe and AWS, and an HTTP adapter for the Lambda handler."""

import logging
import sys
from pathlib import Path

# Like the Lambda runtime's /opt/python: the layer's package is importable by the function.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "core")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto server's per-request lines
