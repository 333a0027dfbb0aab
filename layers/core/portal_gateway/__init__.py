"""Stripe portal gateway's runtime: what the Lambda functions import and the layer ships (web/, identity/,
billing/, aws/, checks/, and the shared config, errors, caching, text, http_pool and service). Never imports
the operator's CLI (portal_admin)."""

import logging

__version__ = "1.1.0"  # also in pyproject.toml, template.yaml (Serverless Application Repository) and CHANGELOG.md

# Parent of every module logger here; the handler gives it Powertools' structured formatter.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# Secrets hygiene: these libraries log request bodies and URLs at DEBUG (emails in list queries, access
# tokens sent to Cognito GetUser, Stripe post data). Even with LOG_LEVEL=DEBUG they stay at WARNING.
for _noisy in ("stripe", "urllib3", "botocore", "boto3", "requests"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
