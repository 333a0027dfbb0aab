"""Stripe: which customer belongs to a user (resolution, creation tickets), the Stripe adapter, its small HTTP
client and the key provider. The adapter and client never import the service."""
