"""scripts/make_priming_token.py makes the module the init rehearsal uses: run it, and the token it prints verifies
with the key it prints (our RS256 check), with the same claims as the committed token; the committed pair
verifies too."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from portal_gateway import priming_token
from portal_gateway.identity.tokens import rsa_public_key, verify_rs256

ROOT = Path(__file__).resolve().parents[3]


def verifies(token: str, jwk: dict) -> bool:
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    return verify_rs256(rsa_public_key(jwk), f"{header}.{payload}".encode("ascii"), raw)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_script_makes_a_token_its_key_verifies_and_the_committed_pair_verifies():
    made = subprocess.run([sys.executable, "scripts/make_priming_token.py"], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60).stdout
    fresh: dict = {}
    exec(compile(made, "priming_token.py", "exec"), fresh)  # noqa: S102 - the script's own output, run here to test it
    assert verifies(fresh["PRIMING_TOKEN"], fresh["PRIMING_JWK"])
    assert not verifies(fresh["PRIMING_TOKEN"], priming_token.PRIMING_JWK)  # a new key each run
    assert claims(fresh["PRIMING_TOKEN"]) == claims(priming_token.PRIMING_TOKEN)
    assert verifies(priming_token.PRIMING_TOKEN, priming_token.PRIMING_JWK)
    assert claims(priming_token.PRIMING_TOKEN)["iss"] == priming_token.PRIMING_ISSUER
