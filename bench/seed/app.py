"""The seed application as the article runs it: Flask-JWT issues tokens at /auth and
verifies them in @jwt_required() on every request to /protected.

    gunicorn -w 5 -b 127.0.0.1:5000 app:app      (bench/flask-jwt.sh runs exactly this)

Kept for the benchmark only: it needs Flask-JWT's old dependency set (seed/requirements.txt).
"""

import hmac

from flask import Flask
from flask_jwt import JWT, current_identity, jwt_required


class User(object):
    def __init__(self, id, username, password):
        self.id = id
        self.username = username
        self.password = password

    def __str__(self):
        return "User(id='%s')" % self.id


users = [
    User(1, "user1", "abcxyz"),
    User(2, "user2", "abcxyz"),
]

username_table = {u.username: u for u in users}
userid_table = {u.id: u for u in users}


def authenticate(username, password):
    user = username_table.get(username, None)
    if user and hmac.compare_digest(user.password.encode("utf-8"), password.encode("utf-8")):
        return user


def identity(payload):
    user_id = payload["identity"]
    return userid_table.get(user_id, None)


app = Flask(__name__)
app.config["SECRET_KEY"] = "super-secret"

jwt = JWT(app, authenticate, identity)


@app.route("/protected")
@jwt_required()
def protected():
    return "%s" % current_identity
