// A real OpenID provider (the certified `oidc-provider` package) for carevault's end-to-end auth
// tests (tests/oidc/). Test-only: dev interactions accept any login, secrets are constants.
//
// Usage: node provider.mjs <port>. Listens on 127.0.0.1:<port> with issuer
// http://127.0.0.1:<port>. Every start generates a fresh RSA and P-256 signing key (random
// `kid`s), so restarting the process is a key rotation.
//
// Besides the provider's own endpoints, one test-only endpoint:
//   GET /test/id-token?client_id=..&sub=..[&tenant=..][&email=..]
// runs a real authorization code flow against this provider (authorize → dev login → dev
// consent → code → token endpoint) and answers {"id_token": "..."}. The harness never signs
// anything itself: the token is the one the token endpoint returned.
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: node provider.mjs <port>');
const issuer = `http://127.0.0.1:${port}`;
const redirectUri = `${issuer}/test/callback`; // never served: the flow stops at the redirect

/** A private signing JWK with a random kid (oidc-provider publishes its public half). */
function signingKey(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg}-${randomUUID()}`, alg, use: 'sig' };
}

/** Claims of the accounts the tests log in as, set by /test/id-token before each flow. */
const accounts = new Map();

const client = (id, alg) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  id_token_signed_response_alg: alg,
});

const provider = new Provider(issuer, {
  clients: [client('carevault-rs256', 'RS256'), client('carevault-es256', 'ES256')],
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  },
  // The tenant claim under the name carevault is configured with (JWT_TENANT_CLAIM_NAME).
  claims: { openid: ['sub'], email: ['email', 'email_verified'], tenant: ['custom:tenant_id'] },
  scopes: ['openid', 'email', 'tenant'],
  // Put the scopes' claims into the ID token itself (not only the userinfo endpoint).
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    const account = accounts.get(sub) ?? {};
    return {
      accountId: sub,
      async claims() {
        const claims = { sub };
        if (account.tenant) claims['custom:tenant_id'] = account.tenant;
        if (account.email) Object.assign(claims, { email: account.email, email_verified: true });
        return claims;
      },
    };
  },
  // carevault refuses tokens with exp - iat above JWT_MAX_LIFETIME_MINUTES (60 by default).
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
  cookies: { keys: ['test-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});

/** One browser: follows the flow's redirects by hand, keeping its cookies. */
async function browse(url, init = {}, jar = new Map()) {
  const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  const response = await fetch(new URL(url, issuer), { ...init, redirect: 'manual', headers: { ...init.headers, cookie } });
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const [name, value] = [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)];
    if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name); else jar.set(name, value);
  }
  return response;
}

const form = (fields) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

/** The authorization code flow, as a browser and a relying party would run it. */
async function idToken({ clientId, sub }) {
  const jar = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL('/auth', issuer);
  Object.entries({
    client_id: clientId, response_type: 'code', scope: 'openid email tenant', redirect_uri: redirectUri,
    state: randomUUID(), nonce: randomUUID(), code_challenge_method: 'S256',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
  }).forEach(([k, v]) => authorize.searchParams.set(k, v));

  let response = await browse(authorize, {}, jar);
  // Follow redirects, answering the login and consent prompts, until the provider sends the
  // browser back to the client with a code.
  for (let step = 0; step < 10; step += 1) {
    const location = response.headers.get('location');
    if (!location) throw new Error(`flow stopped: HTTP ${response.status} ${await response.text()}`);
    const next = new URL(location, issuer);
    if (next.href.startsWith(redirectUri)) {
      const code = next.searchParams.get('code');
      if (!code) throw new Error(`no code in the redirect: ${next.search}`);
      const basic = Buffer.from(`${clientId}:${clientId}-secret`).toString('base64');
      const token = await fetch(new URL('/token', issuer), {
        ...form({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }),
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
      });
      const body = await token.json();
      if (!body.id_token) throw new Error(`token endpoint: HTTP ${token.status} ${JSON.stringify(body)}`);
      return body.id_token;
    }
    if (/^\/interaction\/[^/]+$/.test(next.pathname)) {
      const page = await (await browse(next, {}, jar)).text(); // sets nothing new; shows the prompt
      const prompt = page.includes('name="login"') ? { prompt: 'login', login: sub, password: 'any' } : { prompt: 'consent' };
      response = await browse(next, form(prompt), jar);
    } else {
      response = await browse(next, {}, jar);
    }
  }
  throw new Error('too many redirects in the authorization code flow');
}

const callback = provider.callback();
createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname !== '/test/id-token') return callback(req, res);
  const q = Object.fromEntries(url.searchParams);
  try {
    accounts.set(q.sub, { tenant: q.tenant, email: q.email });
    const token = await idToken({ clientId: q.client_id, sub: q.sub });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id_token: token }));
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error?.stack ?? error));
  }
}).listen(port, '127.0.0.1', () => console.error(`oidc-provider listening on ${issuer}`));
