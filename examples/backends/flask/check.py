"""The seed's authenticate(), kept in the app for [login.remote]: the gateway POSTs
{"username": ..., "password": ...} here at every login and issues the token itself.

    PORT=7000 python check.py        # or: gunicorn -b 127.0.0.1:7000 check:check

Serve it on loopback, on a port no gateway route forwards to: reachable by clients, it
would let them test passwords without the gateway's login limits.
"""

import hmac
import os

from flask import Flask, request


class User(object):
    def __init__(self, id, username, password, roles):
        self.id = id
        self.username = username
        self.password = password
        self.roles = roles


# The app's user table, where the passwords stay (the seed's, plain as in the article; a
# real app keeps hashes and compares with its hashing library).
users = [
    User(1, "user1", "abcxyz", ["admin"]),
    User(2, "user2", "abcxyz", []),
]

username_table = {u.username: u for u in users}


def authenticate(username, password):
    user = username_table.get(username, None)
    if user and hmac.compare_digest(user.password.encode("utf-8"), password.encode("utf-8")):
        return user


check = Flask("check")


@check.post("/check")
def check_credentials():
    body = request.get_json(silent=True) or {}
    user = authenticate(body.get("username", ""), body.get("password", ""))
    if user is None:
        return {"error": "invalid credentials"}, 401
    return {"id": user.id, "roles": user.roles}


if __name__ == "__main__":
    check.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "7000")))
