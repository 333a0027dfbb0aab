"""The init rehearsal's own token and public key (made by scripts/make_priming_token.py; the private key
was discarded). Trusted by no verifier but the rehearsal's, whose JWKS holds only this key."""

PRIMING_ISSUER = 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Priming'
PRIMING_CLIENT_ID = 'priming'
PRIMING_SUB = '00000000-0000-4000-8000-000000000000'
PRIMING_JWK = {'kid': 'priming', 'kty': 'RSA', 'alg': 'RS256', 'use': 'sig', 'e': 'AQAB', 'n': (
    'uCSBtKxegrwoak-AEl-6D731LBdQgDZogLAwki59TCyE7qHfD7HUH8cYxN7cTh4AnF4Oz4dUrHJBJK_EPhYvvLutwncJpEGeHYFT'
    '3cIxbfupNl24leuYN-uVQ4k0DSA-AobAWV47FjD9lY25syIRbnu0_pMeDzRd8OsUv7x2Vsh8hgsWL7NQWxbbTT5Ync3QVjlphHRD'
    'ebxTIO3SSmtHwAkf8QiFEzWPV8S_2MUxEQoT1dN5HuxxayIdPM5HkVvq4QbmJaaEnHVwMO3qaB1tXXkkhIX6p593bMnSe-HS-uCQ'
    'b3LCofHLK1ti79dxxtz9E75vpu7AKk4EKTV4xWjj-w'
)}
PRIMING_TOKEN = (
    'eyJraWQiOiJwcmltaW5nIiwiYWxnIjoiUlMyNTYifQ.eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwM'
    'DAiLCJhdWQiOiJwcmltaW5nIiwiZW1haWwiOiJwcmltaW5nQGV4YW1wbGUuaW52YWxpZCIsImVtYWlsX3ZlcmlmaWVkIjp0cnVlL'
    'CJjb2duaXRvOnVzZXJuYW1lIjoicHJpbWluZyIsImlzcyI6Imh0dHBzOi8vY29nbml0by1pZHAudXMtZWFzdC0xLmFtYXpvbmF3c'
    'y5jb20vdXMtZWFzdC0xX1ByaW1pbmciLCJ0b2tlbl91c2UiOiJpZCIsImF1dGhfdGltZSI6MTc2NzIyNTYwMCwiaWF0IjoxNzY3M'
    'jI1NjAwLCJleHAiOjQxMDI0NDQ4MDB9.FwiRLpBfBQ_G4xB0ra4kYZSc1xziUXTnhKm0ZI-no6jafYwEwsbbCLZB3VCPJyF-k7Dz'
    '0QKlpuViFfyeK5OxXE04VYyp6177YeR01IB3m9WSDuQRxs0o6eH27XZZjB8H40Yv0BmTyLSqlJrd0JaO7VxrflCfR295Zwm2hDbS'
    'TtQ4-CfDvDkurOG23AJNr1nyYb_xptc3gMVatfQLv1vcWxLF07ZGYsmE5TLhI9CvvB2qNTOQduaEytIkpEIeMr3j8MFIvS7y2G4l'
    '742-3URmsNSW5aW8vyJlqhAp6BE3zaFBWesHkKun8I6ERpOc3nP7oPEr22-00LIoOweVBe2-YQ'
)
