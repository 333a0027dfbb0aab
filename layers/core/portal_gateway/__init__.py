"""Stripe portal gateway: the shared core (layer) behind the portal function."""

import logging

# Parent of every module logger here; the handler gives it Powertools' structured formatter.
logging.getLogger(__name__).addHandler(logging.NullHandler())
