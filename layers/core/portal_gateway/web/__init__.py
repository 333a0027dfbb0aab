"""The HTTP edge: the answers and pages the service gives, the plain-link sign-in and sign-out (Hosted UI), and
the request policy (return addresses, locale, deep links). Imported by the portal function and the service."""
