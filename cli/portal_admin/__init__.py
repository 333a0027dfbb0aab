"""The operator's command, `stripe-portal-admin`: key checks and rotation (keys), support with audit records
(support), the post-deploy smoke test (smoke), wired in cli. It depends on the runtime's shared parts
(portal_gateway); no function imports it, and the Lambda layer does not ship it."""
