// The seed's /protected behind the gateway, in Express: a middleware turns the gateway's
// X-Identity header (and X-Identity-Roles) into req.user. No token is ever parsed.
//
//   PORT=3000 node server.js
//
// Bind it to 127.0.0.1 or a private network: X-Identity is only as trustworthy as the fact
// that nothing but the gateway can reach this app.
"use strict";

const express = require("express");

class User {
  constructor(id, username) {
    this.id = id;
    this.username = username;
  }

  toString() {
    return `User(id='${this.id}')`;
  }
}

const users = [new User(1, "user1"), new User(2, "user2")];
const useridTable = new Map(users.map((u) => [String(u.id), u]));

// The answer to a request that reached the app around the gateway (no X-Identity).
const NOT_THROUGH_GATEWAY = "Request did not come through the gateway";

function unauthorized(res, error, description) {
  res.status(401).json({ description, error, status_code: 401 });
}

// Replaces a JWT middleware: the gateway verified the token and named the caller.
function identityRequired(req, res, next) {
  const id = req.get("X-Identity");
  if (id === undefined) {
    // Reached around the gateway: fail closed.
    return unauthorized(res, "Authorization Required", NOT_THROUGH_GATEWAY);
  }
  const user = useridTable.get(id);
  if (user === undefined) {
    return unauthorized(res, "Invalid JWT", "User does not exist");
  }
  req.user = user;
  req.roles = (req.get("X-Identity-Roles") || "").split(",").filter(Boolean);
  next();
}

const app = express();
app.use(identityRequired);

app.get("/protected", (req, res) => {
  res.type("text/plain").send(String(req.user));
});

app.get("/whoami", (req, res) => {
  res.json({ id: req.user.id, username: req.user.username, roles: req.roles });
});

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 3000);
// Express 5 hands a listen error (a port in use) to this callback instead of throwing it.
app.listen(port, host, (error) => {
  if (error) {
    throw error;
  }
  console.log(`listening on http://${host}:${port}`);
});
