"""The seed application with Flask-JWT taken out: the gateway verifies the token and sends
the caller's id in X-Identity (and claims in the headers its [identity] table names).

    PORT=5000 python app.py          # or: gunicorn -b 127.0.0.1:5000 app:app

This app never sees a token. It trusts X-Identity only because nothing but the gateway can
reach it: bind it to 127.0.0.1 or a private network.
"""

import os
from functools import wraps

from flask import Flask, g, jsonify
from flask import request
from werkzeug.local import LocalProxy


class User(object):
    def __init__(self, id, username):
        self.id = id
        self.username = username

    def __str__(self):
        return "User(id='%s')" % self.id


# Passwords moved to the gateway ([[users]] or [login.remote]); the app keeps its users.
users = [
    User(1, "user1"),
    User(2, "user2"),
]

# X-Identity carries the id as text ("1"), so the table is keyed by its text form.
userid_table = {str(u.id): u for u in users}

app = Flask(__name__)


# The answer to a request that reached the app around the gateway (no X-Identity).
NOT_THROUGH_GATEWAY = "Request did not come through the gateway"


def unauthorized(error, description):
    response = jsonify(description=description, error=error, status_code=401)
    response.status_code = 401
    return response


def identity_required(fn):
    """What @jwt_required() did, minus the JWT: the gateway already verified it."""

    @wraps(fn)
    def decorator(*args, **kwargs):
        user_id = request.headers.get("X-Identity")
        if user_id is None:
            # Reached around the gateway: fail closed.
            return unauthorized("Authorization Required", NOT_THROUGH_GATEWAY)
        user = userid_table.get(user_id)
        if user is None:
            return unauthorized("Invalid JWT", "User does not exist")
        g.current_identity = user
        roles = request.headers.get("X-Identity-Roles", "")
        g.roles = [r for r in roles.split(",") if r]
        return fn(*args, **kwargs)

    return decorator


current_identity = LocalProxy(lambda: g.current_identity)


@app.route("/protected")
@identity_required
def protected():
    return "%s" % current_identity


@app.route("/whoami")
@identity_required
def whoami():
    return jsonify(id=current_identity.id, username=current_identity.username, roles=g.roles)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
