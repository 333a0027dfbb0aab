"""Stripe portal gateway: the shared core (layer) behind the portal function."""
