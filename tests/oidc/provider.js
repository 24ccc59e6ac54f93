// tokend's test OpenID Provider: panva's oidc-provider (a certified OP) over
// HTTPS on loopback, for the login tests (tests/integration_login.py) and
// `make demo-login`.
//
//   node tests/oidc/provider.js --cert server.pem --key server.key
//        [--port 0] [--access-ttl 4] [--device-ttl 600] [--interval N]
//        [--slow-down N] [--issuer-claim URL] [--secret S]
//        [--jwks FILE] [--jwt-secret S] [--ca FILE --tls-subject-dn DN]
//        [--self-signed-jwks FILE] [--mtls-alias]
//
// Prints the port it listens on (one line, on stdout) once it is ready.
// Features: device flow (RFC 8628), revocation (RFC 7009), introspection
// (RFC 7662), PKCE required with S256 for every client, rotating refresh
// tokens, short-lived access tokens (--access-ttl seconds, also for
// client_credentials).  The login and
// consent pages are oidc-provider's devInteractions (any login, any
// password); tests/oidc/browser.js fills them in.
//
// Clients (see CLIENTS below):
//   tokend-device        public, device_code + refresh_token
//   tokend-native        public, authorization_code + refresh_token,
//                        loopback redirects on any port (native app)
//   tokend-confidential  client_secret_basic or _post (secret: --secret),
//                        both grants; also the one that introspects
// and, for key-based client authentication (tests/integration_keys.py), all
// with the client_credentials grant only:
//   tokend-pkjwt         private_key_jwt with every key of --jwks (a JWKS
//                        file of public keys, made by the test)
//   tokend-pkjwt-ALG     private_key_jwt with the first key of --jwks whose
//                        "alg" is ALG (rs256, ps256, es256, eddsa), and
//                        token_endpoint_auth_signing_alg = ALG
//   tokend-csjwt         client_secret_jwt (HS256) with --jwt-secret
//   tokend-tls           tls_client_auth: a client certificate that the CA
//                        of --ca issued, with the subject --tls-subject-dn
//                        (RFC 4514, e.g. "CN=client,O=tokend tests")
//   tokend-selfsigned    self_signed_tls_client_auth: a certificate whose
//                        x5c is in --self-signed-jwks
// --ca turns on oidc-provider's mTLS feature (tlsClientAuth and
// selfSignedTlsClientAuth): the HTTPS server asks for a client certificate
// (requestCert, rejectUnauthorized: false; oidc-provider decides).  With
// --mtls-alias, a second HTTPS server (same provider) asks for it instead
// of the first, and discovery names its token endpoint in
// mtls_endpoint_aliases (RFC 8705 5), which oidc-provider does not publish
// on its own; the port line is then "PORT MTLS_PORT".
//
// What the real OP does not do on its own, scripted for the tests:
//   --interval N       put "interval": N in the device authorization answer
//                      (oidc-provider sends none, which means 5 s)
//   --slow-down N      answer the next N device-code polls that would be
//                      authorization_pending with slow_down instead
//   --issuer-claim URL the discovery document names this issuer (a mismatch)
// The same settings can be changed while it runs: POST /_ctl/settings with
// a JSON object {"interval", "slow_down", "issuer_claim"}.  GET /_ctl/log
// lists the token, device and revocation requests (no token values);
// GET /_ctl/secrets lists every token, code and secret it issued or knows,
// for the harness's scan of the daemon's logs; GET /_ctl/refresh_tokens
// the refresh tokens it issued, oldest first.  Each token request's log
// entry names the client's auth method (client_auth_method), which server
// took it (listener: "main" or "mtls"), whether a client certificate came
// with it (client_cert: its subject, or null), the error_description and
// oidc-provider's reason behind it (error_detail, e.g. "client assertion
// tokens must only be used once"), and
// a signed client assertion's header and claims (assertion; the JWT itself
// goes into the secrets).

import { X509Certificate, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// oidc-provider's notices go to stdout: keep it for the port alone
console.log = console.info = (...args) => console.error(...args);

const { values: opt } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    port: { type: 'string', default: '0' },
    'access-ttl': { type: 'string', default: '4' },
    'device-ttl': { type: 'string', default: '600' },
    interval: { type: 'string' },
    'slow-down': { type: 'string', default: '0' },
    'issuer-claim': { type: 'string' },
    secret: { type: 'string' },
    jwks: { type: 'string' },
    'jwt-secret': { type: 'string' },
    ca: { type: 'string' },
    'tls-subject-dn': { type: 'string' },
    'self-signed-jwks': { type: 'string' },
    'mtls-alias': { type: 'boolean', default: false },
  },
});

function die(message) {
  process.stderr.write(`provider.js: ${message}\n`);
  process.exit(2);
}

function seconds(name) {
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < 1) die(`--${name}: not a positive integer: ${opt[name]}`);
  return n;
}

if (!opt.cert || !opt.key) die('usage: provider.js --cert FILE --key FILE [--port N] ...');

const settings = {
  interval: opt.interval === undefined ? null : seconds('interval'),
  slow_down: Number(opt['slow-down']) || 0,
  issuer_claim: opt['issuer-claim'] || null,
};
const accessTTL = seconds('access-ttl');
const deviceTTL = seconds('device-ttl');
const clientSecret = opt.secret || `confidential-${randomBytes(16).toString('hex')}`;
const jwtSecret = opt['jwt-secret'] || null;
if (opt['mtls-alias'] && !opt.ca) die('--mtls-alias needs --ca');

function readJWKS(path) {
  try {
    const jwks = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(jwks.keys)) throw new Error('no "keys" array');
    return jwks;
  } catch (err) {
    return die(`${path}: ${err.message}`);
  }
}

// Everything the harness must never find in a tokend log.
const secrets = new Set([clientSecret]);
if (jwtSecret) secrets.add(jwtSecret);
const refreshTokens = [];     // in the order issued
const log = [];
const started = Date.now() / 1000;

const LOOPBACK = ['http://127.0.0.1/callback', 'http://[::1]/callback'];
const CLIENTS = [
  {
    client_id: 'tokend-device',
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    application_type: 'native',
  },
  {
    client_id: 'tokend-native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: LOOPBACK,
    application_type: 'native',
  },
  {
    client_id: 'tokend-confidential',
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code',
      'authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: LOOPBACK,
    application_type: 'native',
  },
];

const MACHINE = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
};
const authMethods = ['client_secret_basic', 'client_secret_post', 'none'];
if (opt.jwks) {
  const jwks = readJWKS(opt.jwks);
  authMethods.push('private_key_jwt');
  CLIENTS.push({ client_id: 'tokend-pkjwt', token_endpoint_auth_method: 'private_key_jwt',
    jwks, ...MACHINE });
  const perAlg = new Set();
  for (const key of jwks.keys) {
    // the first key of each alg makes that alg's client
    if (!key.alg || perAlg.has(key.alg)) continue;
    perAlg.add(key.alg);
    CLIENTS.push({
      client_id: `tokend-pkjwt-${key.alg.toLowerCase()}`,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: key.alg,
      jwks: { keys: [key] },
      ...MACHINE,
    });
  }
}
if (jwtSecret) {
  authMethods.push('client_secret_jwt');
  CLIENTS.push({ client_id: 'tokend-csjwt', client_secret: jwtSecret,
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256', ...MACHINE });
}
const caPEM = opt.ca ? readFileSync(opt.ca) : null;
if (caPEM) {
  authMethods.push('tls_client_auth', 'self_signed_tls_client_auth');
  if (opt['tls-subject-dn']) {
    CLIENTS.push({ client_id: 'tokend-tls', token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: opt['tls-subject-dn'], ...MACHINE });
  }
  if (opt['self-signed-jwks']) {
    CLIENTS.push({ client_id: 'tokend-selfsigned',
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: readJWKS(opt['self-signed-jwks']), ...MACHINE });
  }
}

// The peer's certificate as oidc-provider wants it (PEM), or undefined.
function peerCertificate(ctx) {
  const cert = ctx.socket.getPeerCertificate?.();
  if (!cert || !cert.raw) return undefined;
  const b64 = cert.raw.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

// RFC 4514 string of a subject: Node lists the RDNs most significant first,
// one a line; RFC 4514 writes them the other way round, with commas.
function subjectDN(pem) {
  return new X509Certificate(pem).subject.split('\n').reverse().join(',');
}

const tlsOptions = { cert: readFileSync(opt.cert), key: readFileSync(opt.key) };
const askForCert = caPEM ? { requestCert: true, rejectUnauthorized: false, ca: caPEM } : {};

// The port is only known once we listen; the issuer must name it.
const server = createServer({ ...tlsOptions, ...(opt['mtls-alias'] ? {} : askForCert) });
const mtlsServer = opt['mtls-alias'] ? createServer({ ...tlsOptions, ...askForCert }) : null;
server.listen(Number(opt.port), '127.0.0.1', () => {
  if (mtlsServer) mtlsServer.listen(0, '127.0.0.1', start);
  else start();
});

function start() {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  const discovery = {};
  if (mtlsServer) {
    discovery.mtls_endpoint_aliases = {
      token_endpoint: `https://127.0.0.1:${mtlsServer.address().port}/token`,
    };
  }
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    clientAuthMethods: authMethods,
    discovery,
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return { sub: id }; } };
    },
    scopes: ['openid', 'offline_access'],
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
      mTLS: {
        enabled: Boolean(caPEM),
        tlsClientAuth: Boolean(caPEM),
        selfSignedTlsClientAuth: Boolean(caPEM),
        getCertificate: peerCertificate,
        // verified against --ca by the TLS layer (expiry included)
        certificateAuthorized: (ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches(ctx, property, expected) {
          if (property !== 'tls_client_auth_subject_dn') return false;
          return subjectDN(peerCertificate(ctx)) === expected;
        },
      },
    },
    pkce: { required: () => true },
    rotateRefreshToken: true,
    cookies: { keys: [randomBytes(32).toString('hex')] },
    ttl: {
      AccessToken: accessTTL,
      ClientCredentials: accessTTL,
      AuthorizationCode: 60,
      DeviceCode: deviceTTL,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 3600,
    },
  });
  // why a client was refused (its answer only says invalid_client), for the log
  provider.on('grant.error', (ctx, err) => {
    ctx.state.errorDetail = err.error_detail || err.message || null;
  });
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`provider.js: server_error: ${err.stack}\n`);
  });

  provider.use(control);
  provider.use(script);
  server.on('request', provider.callback());
  if (mtlsServer) {
    mtlsServer.on('request', provider.callback());
    process.stdout.write(`${port} ${mtlsServer.address().port}\n`);
  } else {
    process.stdout.write(`${port}\n`);
  }
}

function body(ctx) {
  return new Promise((resolve, reject) => {
    let data = '';
    ctx.req.setEncoding('utf8');
    ctx.req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new Error('body too large'));
    });
    ctx.req.on('end', () => resolve(data));
    ctx.req.on('error', reject);
  });
}

// /_ctl/*: the harness's own control calls.
async function control(ctx, next) {
  if (!ctx.path.startsWith('/_ctl/')) {
    await next();
    return;
  }
  ctx.type = 'json';
  if (ctx.path === '/_ctl/log' && ctx.method === 'GET') {
    ctx.body = log;
  } else if (ctx.path === '/_ctl/secrets' && ctx.method === 'GET') {
    ctx.body = [...secrets];
  } else if (ctx.path === '/_ctl/refresh_tokens' && ctx.method === 'GET') {
    ctx.body = refreshTokens;
  } else if (ctx.path === '/_ctl/settings') {
    if (ctx.method === 'POST') {
      let change;
      try {
        change = JSON.parse(await body(ctx));
      } catch (err) {
        ctx.status = 400;
        ctx.body = { error: String(err) };
        return;
      }
      for (const [k, v] of Object.entries(change)) {
        if (!(k in settings)) {
          ctx.status = 400;
          ctx.body = { error: `unknown setting ${k}` };
          return;
        }
        settings[k] = v;
      }
    }
    const clients = { 'tokend-confidential': clientSecret };
    if (jwtSecret) clients['tokend-csjwt'] = jwtSecret;
    ctx.body = { ...settings, clients };
  } else {
    ctx.status = 404;
    ctx.body = { error: 'no such control call' };
  }
}

function keep(value) {
  if (typeof value === 'string' && value.length >= 6) secrets.add(value);
}

// The scripted parts, around oidc-provider's own answers.
async function script(ctx, next) {
  await next();
  const answer = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)
    && typeof ctx.body.pipe !== 'function' ? ctx.body : null;
  const route = ctx.oidc?.route;

  if (route === 'discovery' && answer && settings.issuer_claim) {
    answer.issuer = settings.issuer_claim;
  }
  if (route === 'device_authorization' && answer) {
    // not the user_code: it is shown to humans, and may be logged
    keep(answer.device_code);
    if (settings.interval !== null) answer.interval = settings.interval;
  }
  if (route === 'token' && answer) {
    const grant = ctx.oidc.params?.grant_type;
    if (answer.error === 'authorization_pending' && settings.slow_down > 0) {
      settings.slow_down -= 1;
      answer.error = 'slow_down';
      answer.error_description = 'you are polling too quickly (scripted by the test)';
    }
    keep(answer.access_token);
    keep(answer.refresh_token);
    if (typeof answer.refresh_token === 'string') refreshTokens.push(answer.refresh_token);
    keep(answer.id_token);
    keep(ctx.oidc.params?.code);
    keep(ctx.oidc.params?.code_verifier);
    keep(ctx.oidc.params?.client_assertion);
    record(ctx, route, answer, {
      grant_type: grant || null,
      refresh_token_issued: typeof answer.refresh_token === 'string',
    });
  } else if (route === 'device_authorization' || route === 'revocation'
             || route === 'introspection' || route === 'discovery') {
    record(ctx, route, answer, { grant_type: null });
  }
}

// One entry of GET /_ctl/log, in the shape of tests/issuer.py's log (path,
// grant_type, client_id, auth, status, fault) so the harness prints it the
// same way; the error, if any, is shown after the path.
function record(ctx, route, answer, extra) {
  const error = answer?.error || null;
  let auth = 'none';
  if (ctx.get('authorization')) auth = 'basic';
  else if (ctx.oidc?.params?.client_secret) auth = 'post';
  let assertion = null;
  const jwt = ctx.oidc?.params?.client_assertion;
  if (typeof jwt === 'string') {
    try {
      const [h, p] = jwt.split('.').slice(0, 2)
        .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
      assertion = { header: h, claims: p };
    } catch {
      assertion = { malformed: true };
    }
  }
  const cert = peerCertificate(ctx);
  log.push({
    t: Date.now() / 1000 - started,
    now: Date.now() / 1000,
    listener: mtlsServer && ctx.socket.localPort === mtlsServer.address().port ? 'mtls' : 'main',
    client_auth_method: ctx.oidc?.client?.clientAuthMethod || null,
    client_cert: cert ? subjectDN(cert) : null,
    error_description: answer?.error_description || null,
    error_detail: ctx.state?.errorDetail || null,
    assertion,
    route,
    path: error ? `${ctx.path} ${error}` : ctx.path,
    client_id: ctx.oidc?.client?.clientId || null,
    auth,
    status: ctx.status,
    error,
    refresh_token_used: null,
    fault: null,
    ...extra,
  });
}
