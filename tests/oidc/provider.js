// A real OpenID Connect provider (the certified `oidc-provider` package) for the gateway's
// OIDC login tests.
//
// It listens on 127.0.0.1 with a free port and prints {"port": N}. Then it reads one JSON
// line from stdin: {"clients": [...], "accounts": {"id": {claims}}, "authMethods": [...]}
// (authMethods optional: the token endpoint's client authentication methods). The clients are
// registered as given (the tests know the gateway's callback URL only once it runs); it
// prints {"ready": true} and serves. It exits when stdin closes.
//
// Logins use the package's built-in interaction pages (any password; the login names an
// account). The consent step is skipped: the tests' clients are first-party.

import http from 'node:http';
import readline from 'node:readline';

import Provider from 'oidc-provider';

let handler;
const server = http.createServer((req, res) => {
  if (!handler) {
    res.statusCode = 503;
    res.end();
    return;
  }
  handler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

const lines = readline.createInterface({ input: process.stdin });
lines.once('line', (line) => {
  const { clients, accounts, authMethods } = JSON.parse(line);
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    ...(authMethods ? { clientAuthMethods: authMethods } : {}),
    async findAccount(ctx, id) {
      const claims = accounts[id];
      if (!claims) {
        return undefined;
      }
      return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // The requested claims go into the ID token itself (the gateway reads only it).
    conformIdTokenClaims: false,
    cookies: { keys: ['a test-only key that signs the provider cookies'] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email groups');
      await grant.save();
      return grant;
    },
  });
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({ ready: true, issuer })}\n`);
});
lines.on('close', () => {
  server.close();
  process.exit(0);
});
