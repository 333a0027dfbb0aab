"""Checks shared by the rotation function, the pre-traffic hook and the operator's command: is this Stripe key
usable and of this deployment's account, is this release fit for traffic, the rotation steps."""
