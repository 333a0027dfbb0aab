"""Local development stack: stand-ins for Stripe and AWS, and an HTTP adapter for the Lambda handler."""
