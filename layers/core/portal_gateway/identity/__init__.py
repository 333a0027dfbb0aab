"""Who is calling: Cognito token verification (JWKS cache, fixed check order) and the user's current status.
Imports nothing of billing or the service."""
