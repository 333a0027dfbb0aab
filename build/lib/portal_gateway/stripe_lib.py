"""The `stripe` library, imported once and hardened: no telemetry header, and no request-body logging even if
STRIPE_LOG is set in the environment (its debug lines would print emails)."""

import stripe

stripe.enable_telemetry = False
stripe.log = None
if hasattr(stripe, "_util"):
    stripe._util.STRIPE_LOG = None

__all__ = ["stripe"]
