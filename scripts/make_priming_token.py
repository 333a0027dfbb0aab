"""Make the priming token and its public key (layers/core/portal_gateway/priming_token.py).

    .venv/bin/python scripts/make_priming_token.py > layers/core/portal_gateway/priming_token.py

The portal function rehearses a whole request at init (portal_gateway/priming.py) with a token signed by a key
of its own: a 2,048-bit RSA key as Cognito's, so the rehearsal's signature check is the same work as a real
one. Only the public half is kept (in the module); the private half is thrown away when this script ends. No
real verifier trusts the key: it is in no JWKS but the rehearsal's own.
"""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KID = "priming"
# Claims shaped as a Cognito ID token's. The issuer names no real pool; the dates are fixed (issued 2026-01-01,
# expiring 2100-01-01) so the module never changes between runs of the function.
CLAIMS = {
    "sub": "00000000-0000-4000-8000-000000000000",
    "aud": "priming",
    "email": "priming@example.invalid",
    "email_verified": True,
    "cognito:username": "priming",
    "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Priming",
    "token_use": "id",
    "auth_time": 1767225600,
    "iat": 1767225600,
    "exp": 4102444800,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def main() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    header = {"kid": KID, "alg": "RS256"}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(CLAIMS, separators=(",", ":")).encode()))
    signature = private.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    jwk = {"kid": KID, "kty": "RSA", "alg": "RS256", "use": "sig",
           "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(numbers.e.to_bytes(3, "big"))}
    print('"""The init rehearsal\'s own token and public key (made by scripts/make_priming_token.py; the private key')
    print('was discarded). Trusted by no verifier but the rehearsal\'s, whose JWKS holds only this key."""')
    print()
    print(f"PRIMING_ISSUER = {CLAIMS['iss']!r}")
    print(f"PRIMING_CLIENT_ID = {CLAIMS['aud']!r}")
    print(f"PRIMING_SUB = {CLAIMS['sub']!r}")
    fixed = ", ".join(f"{name!r}: {jwk[name]!r}" for name in ("kid", "kty", "alg", "use", "e"))
    print(f"PRIMING_JWK = {{{fixed}, 'n': (")
    print_lines(jwk["n"], "    ")
    print(")}")
    print("PRIMING_TOKEN = (")
    print_lines(f"{signing_input}.{b64url(signature)}", "    ")
    print(")")


def print_lines(text: str, indent: str) -> None:
    for start in range(0, len(text), 100):
        print(f"{indent}{text[start:start + 100]!r}")


if __name__ == "__main__":
    main()
