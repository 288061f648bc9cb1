"""Mints a token the way Flask-JWT 0.3.2 does with its default handlers, using PyJWT.

Flask-JWT's payload handler writes {"exp", "iat", "nbf", "identity"} in that order from
datetimes (exp = iat + JWT_EXPIRATION_DELTA, nbf = iat + JWT_NOT_BEFORE_DELTA), and its
encode handler calls jwt.encode(payload, SECRET_KEY, algorithm="HS256", headers=None).
PyJWT 1.x wrote the header as {"typ":"JWT","alg":"HS256"}; PyJWT 2 sorts header keys
unless told not to, so sort_headers=False gives Flask-JWT's exact bytes.

    python3 flask_jwt_token.py IDENTITY_JSON SECRET [IAT]     # IAT: Unix seconds, default now
"""

import json
import sys
import warnings
from datetime import datetime, timedelta, timezone

import jwt

# The seed's SECRET_KEY is 12 bytes: PyJWT warns, Flask-JWT's PyJWT 1.x did not.
warnings.filterwarnings("ignore", message="The HMAC key is")

EXPIRATION_DELTA = timedelta(seconds=300)
NOT_BEFORE_DELTA = timedelta(seconds=0)


def flask_jwt_token(identity, secret, iat):
    payload = {
        "exp": iat + EXPIRATION_DELTA,
        "iat": iat,
        "nbf": iat + NOT_BEFORE_DELTA,
        "identity": identity,
    }
    return jwt.encode(payload, secret, algorithm="HS256", headers=None, sort_headers=False)


def main():
    identity = json.loads(sys.argv[1])
    secret = sys.argv[2]
    if len(sys.argv) > 3:
        iat = datetime.fromtimestamp(int(sys.argv[3]), tz=timezone.utc)
    else:
        iat = datetime.now(tz=timezone.utc).replace(microsecond=0)
    print(flask_jwt_token(identity, secret, iat))


if __name__ == "__main__":
    main()
