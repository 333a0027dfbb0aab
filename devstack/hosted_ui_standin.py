"""A dev-only stand-in for the Cognito Hosted UI (managed login). NOT Cognito. moto does not implement /oauth2/*.

It serves a login form at /oauth2/authorize, signs users in with a real InitiateAuth against moto, and issues
authorization codes redeemable once at /oauth2/token with the PKCE verifier. Like Cognito, it keeps its own
session cookie after a sign-in: a later /oauth2/authorize of that browser gets a code at once, without the form,
unless `prompt=login` asks for credentials; only /logout (to a registered sign-out URL) ends that session.
The ID token is moto's own, with the OAuth `nonce` added and re-signed with moto's signing key (moto's tokens
carry no nonce), so the service verifies it against moto's JWKS exactly as it would a real Cognito token.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

LABEL = "Hosted UI stand-in (local development, not Cognito)"
SESSION_COOKIE = "cognito"  # the Hosted UI's own session, on its own domain


def moto_signing_key():
    """moto's private signing key, which its JWKS endpoint publishes the public half of."""
    from moto.utilities.utils import load_resource

    jwk = load_resource("cognitoidp/resources/jwks-private.json")
    jwk = jwk["keys"][0] if "keys" in jwk else jwk
    return jwk["kid"], jwt.PyJWK(jwk, algorithm="RS256")


class HostedUiStandin:
    def __init__(self, environment, host: str = "127.0.0.1", port: int = 0):
        self.environment = environment  # devstack.aws_standin.Environment: pool, client, sign_in()
        self.clients: dict[str, dict] = {}
        self.codes: dict[str, dict] = {}
        self.password = None  # the demo users' password, shown on the sign-in page (local stack only)
        self.demo_users: set[str] = set(environment.users)  # the users that password is for: those made before
        self.pending_signups: dict[str, dict] = {}  # username -> {"code", "password", "params"}
        self.sessions: dict[str, dict] = {}  # session cookie value -> the signed-in user's tokens
        self.token_delay = 0.0  # seconds the token endpoint takes to answer (a slow Cognito, for tests)
        self.lock = threading.Lock()
        self.token_requests = 0
        kid, self._key = moto_signing_key()
        self._kid = kid
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner._get(self)

            def do_POST(self):
                owner._post(self)

            def do_OPTIONS(self):
                owner._send(self, 204, "", cors=True)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> HostedUiStandin:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def register_client(self, client_id: str, redirect_uris: list[str], client_secret: str | None = None,
                        allowed_origins: tuple[str, ...] = (), logout_uris: list[str] | None = None) -> None:
        self.clients[client_id] = {"redirect_uris": list(redirect_uris), "secret": client_secret,
                                   "origins": tuple(allowed_origins), "logout_uris": list(logout_uris or [])}

    # --- pages --------------------------------------------------------------------------------------------------
    def _get(self, handler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/oauth2/authorize":
            problem = self._authorize_problem(params)
            if problem:
                return self._send(handler, 400, self._page(f"<p id=error>{html.escape(problem)}</p>"))
            with self.lock:
                session = self.sessions.get(self._session_cookie(handler) or "")
            if session is not None and params.get("prompt") != "login":
                return self._issue_code(handler, params, session["tokens"])  # signed in already: no form
            return self._send(handler, 200, self._login_form(params))
        if url.path == "/logout":
            return self._logout(handler, params)
        if url.path == "/cancel":
            return self._redirect(handler, params.get("redirect_uri", ""),
                                  {"error": "access_denied", "state": params.get("state", "")})
        if url.path == "/signup":
            return self._send(handler, 200, self._signup_form(params))
        self._send(handler, 404, self._page("<p>Not found</p>"))

    def _post(self, handler) -> None:
        url = urlsplit(handler.path)
        length = min(int(handler.headers.get("Content-Length") or 0), 64 * 1024)
        form = {k: v[-1] for k, v in parse_qs(handler.rfile.read(length).decode("utf-8", "replace")).items()}
        if url.path == "/login":
            return self._login(handler, form)
        if url.path == "/signup":
            return self._signup(handler, form)
        if url.path == "/confirm":
            return self._confirm(handler, form)
        if url.path == "/oauth2/token":
            return self._token(handler, form)
        self._send(handler, 404, self._page("<p>Not found</p>"))

    def _authorize_problem(self, params: dict) -> str | None:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return "Unknown client_id."
        if params.get("redirect_uri") not in client["redirect_uris"]:
            return "redirect_uri is not registered for this app client."
        if params.get("response_type") != "code":
            return "Only response_type=code is supported."
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required."
        return None

    def _login_form(self, params: dict, error: str = "") -> str:
        hidden = "".join(f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        users = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>'
                        for u in self.environment.users)
        back = {"redirect_uri": params.get("redirect_uri", ""), "state": params.get("state", "")}
        cancel = f"/cancel?{urlencode(back)}"
        demo = ""
        if self.password:
            demo = (f"<p id=demo-users style='background:#f4f4f8;padding:.5rem'>Demo users (password "
                    f"<code id=demo-password>{html.escape(self.password)}</code>): "
                    f"{html.escape(', '.join(u for u in self.environment.users if u in self.demo_users))}. "
                    "Accounts created here use the password chosen for them.</p>")
        return self._page(
            f"<h1>Sign in</h1>{demo}<p id=error style='color:#b00'>{html.escape(error)}</p>"
            f"<form method=post action=/login>{hidden}"
            f"<p><label>User <select id=username name=username>{users}</select></label></p>"
            "<p><label>Password <input id=password name=password type=password></label></p>"
            f"<p><button id=sign-in>Sign in</button> <a id=cancel href=\"{html.escape(cancel)}\">Cancel</a></p></form>"
            f"<p>New here? <a id=sign-up href=\"/signup?{html.escape(urlencode(params))}\">Create an account</a></p>")

    # --- sign-up with an emailed code, as Cognito's managed login does it ------------------------------------------
    def _signup_form(self, params: dict, error: str = "", *, email: str = "", name: str = "") -> str:
        hidden = "".join(f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        # What was typed is kept on an error (but the password), as Cognito's managed login keeps it.
        return self._page(
            f"<h1>Create an account</h1><p id=error style='color:#b00'>{html.escape(error)}</p>"
            f"<form method=post action=/signup>{hidden}"
            f"<p><label>Email <input id=new-email name=email type=email value=\"{html.escape(email)}\"></label></p>"
            f"<p><label>Name <input id=new-name name=name value=\"{html.escape(name)}\"></label></p>"
            "<p><label>Password <input id=new-password name=password type=password></label> "
            "(at least 8 characters, with upper and lower case letters and a digit)</p>"
            "<p><button id=create>Create account</button></p></form>")

    def _signup(self, handler, form: dict) -> None:
        params = {k: v for k, v in form.items() if k not in ("email", "name", "password")}
        email, password = form.get("email", "").strip(), form.get("password", "")
        name = form.get("name", "").strip()
        if "@" not in email or len(password) < 8:
            return self._send(handler, 400, self._signup_form(params, "Enter an email address and a password of "
                                                                      "at least 8 characters.", email=email, name=name))
        cognito = self.environment.moto.client("cognito-idp")
        try:
            cognito.sign_up(ClientId=self.environment.client_id, Username=email, Password=password,
                            UserAttributes=[{"Name": "email", "Value": email},
                                            {"Name": "name", "Value": name or email}])
        except Exception as exc:  # noqa: BLE001 - taken username, weak password: say which, as the managed login does
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            message = ("That password is too weak: use at least 8 characters, with upper and lower case letters and "
                       "a digit." if code == "InvalidPasswordException" else
                       "An account with this email exists already.")
            return self._send(handler, 400, self._signup_form(params, message, email=email, name=name))
        code = f"{secrets.randbelow(10**6):06d}"
        with self.lock:
            # The password is kept (in this process, until confirmed) to sign the new user in once confirmed, as
            # the managed login does after a sign-up.
            self.pending_signups[email] = {"code": code, "params": params, "password": password}
        self._send(handler, 200, self._confirm_form(email, params))

    def _confirm_form(self, email: str, params: dict, error: str = "") -> str:
        hidden = "".join(f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in {**params, "email": email}.items())
        code = self.pending_signups.get(email, {}).get("code", "")
        return self._page(
            f"<h1>Confirm your email</h1><p>We sent a code to {html.escape(email)}.</p>"
            f"<p id=mailbox style='background:#f4f4f8;padding:.5rem'>Stand-in mailbox (local only): the code is "
            f"<code id=emailed-code>{code}</code></p><p id=error style='color:#b00'>{html.escape(error)}</p>"
            f"<form method=post action=/confirm>{hidden}"
            "<p><label>Code <input id=code name=code inputmode=numeric></label></p>"
            "<p><button id=confirm>Confirm</button> "
            "<button id=confirm-unverified name=unverified value=1>Confirm without verifying the email "
            "(as an administrator would)</button></p></form>")

    def _confirm(self, handler, form: dict) -> None:
        email = form.get("email", "")
        params = {k: v for k, v in form.items() if k not in ("email", "code", "unverified")}
        with self.lock:
            pending = self.pending_signups.get(email)
        if pending is None:
            return self._send(handler, 400, self._page("<p id=error>No sign-up is waiting for this address.</p>"))
        cognito = self.environment.moto.client("cognito-idp")
        pool = self.environment.user_pool_id
        if form.get("unverified"):
            cognito.admin_confirm_sign_up(UserPoolId=pool, Username=email)  # email_verified stays false
        elif form.get("code", "").strip() == pending["code"]:
            cognito.admin_confirm_sign_up(UserPoolId=pool, Username=email)
            cognito.admin_update_user_attributes(UserPoolId=pool, Username=email,
                                                 UserAttributes=[{"Name": "email_verified", "Value": "true"}])
        else:
            return self._send(handler, 400, self._confirm_form(email, params, "That code is not right."))
        user = cognito.admin_get_user(UserPoolId=pool, Username=email)
        with self.lock:
            self.pending_signups.pop(email, None)
            self.environment.users[email] = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
        # Confirmed: signed in at once with the password just chosen, and on to the site (or the sign-in page,
        # saying so, if the sign-in request is no longer valid).
        problem = self._authorize_problem(params)
        if problem:
            return self._send(handler, 200, self._login_form(params, "Account created: sign in."))
        tokens = self.environment.sign_in(email, pending["password"])
        session = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[session] = {"tokens": tokens, "username": email}
        self._issue_code(handler, params, tokens, set_session=session)

    def _login(self, handler, form: dict) -> None:
        params = {k: v for k, v in form.items() if k not in ("username", "password")}
        problem = self._authorize_problem(params)
        if problem:
            return self._send(handler, 400, self._page(f"<p id=error>{html.escape(problem)}</p>"))
        try:
            tokens = self.environment.sign_in(form.get("username", ""), form.get("password", ""))
        except Exception:  # noqa: BLE001 - wrong password, unknown user: show the form again
            return self._send(handler, 401, self._login_form(params, "Incorrect username or password."))
        session = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[session] = {"tokens": tokens, "username": form.get("username", "")}
        self._issue_code(handler, params, tokens, set_session=session)

    def _issue_code(self, handler, params: dict, tokens: dict, set_session: str | None = None) -> None:
        id_token = self._with_nonce(tokens["IdToken"], params.get("nonce"))
        code = secrets.token_urlsafe(32)
        with self.lock:
            self.codes[code] = {"client_id": params["client_id"], "redirect_uri": params["redirect_uri"],
                                "challenge": params["code_challenge"], "expires": time.time() + 300,
                                "tokens": {**tokens, "IdToken": id_token}}
        cookie = f"{SESSION_COOKIE}={set_session}; Path=/; HttpOnly; SameSite=Lax" if set_session else None
        self._redirect(handler, params["redirect_uri"], {"code": code, "state": params.get("state", "")},
                       cookie=cookie)

    def _logout(self, handler, params: dict) -> None:
        """Cognito's /logout: ends the session, then goes to logout_uri, which must be registered on the client."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None or params.get("logout_uri") not in client["logout_uris"]:
            return self._send(handler, 400, self._page("<p id=error>logout_uri is not a sign-out URL of this app "
                                                       "client.</p>"))
        with self.lock:
            self.sessions.pop(self._session_cookie(handler) or "", None)
        handler.send_response(302)
        handler.send_header("Location", params["logout_uri"])
        handler.send_header("Set-Cookie", f"{SESSION_COOKIE}=; Path=/; HttpOnly; Max-Age=0")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    @staticmethod
    def _session_cookie(handler) -> str | None:
        for part in (handler.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return value
        return None

    def _with_nonce(self, id_token: str, nonce: str | None) -> str:
        claims = jwt.decode(id_token, options={"verify_signature": False})
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key.key, algorithm="RS256", headers={"kid": self._kid})

    def _token(self, handler, form: dict) -> None:
        self.token_requests += 1
        if self.token_delay:
            time.sleep(self.token_delay)
        origin = handler.headers.get("Origin")
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # one use, whatever happens next
        client = self.clients.get(form.get("client_id", ""))
        error = None
        if form.get("grant_type") != "authorization_code" or grant is None or client is None:
            error = "invalid_grant"
        elif grant["expires"] < time.time() or grant["client_id"] != form["client_id"]:
            error = "invalid_grant"
        elif grant["redirect_uri"] != form.get("redirect_uri"):
            error = "invalid_grant"
        elif base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(
                b"=").decode() != grant["challenge"]:
            error = "invalid_grant"
        elif client["secret"] and handler.headers.get("Authorization") != "Basic " + base64.b64encode(
                f"{form['client_id']}:{client['secret']}".encode()).decode():
            error = "invalid_client"
        cors = origin in (client or {}).get("origins", ())
        if error:
            return self._send(handler, 400, json.dumps({"error": error}), "application/json", cors=cors, origin=origin)
        tokens = grant["tokens"]
        body = {"id_token": tokens["IdToken"], "access_token": tokens["AccessToken"],
                "refresh_token": tokens.get("RefreshToken", ""), "token_type": "Bearer", "expires_in": 3600}
        self._send(handler, 200, json.dumps(body), "application/json", cors=cors, origin=origin)

    # --- plumbing -------------------------------------------------------------------------------------------------
    def _page(self, content: str) -> str:
        return (f"<!doctype html><meta charset=utf-8><title>{LABEL}</title>"
                f"<p><strong>{LABEL}</strong></p>{content}")

    def _redirect(self, handler, target: str, params: dict, cookie: str | None = None) -> None:
        separator = "&" if "?" in target else "?"
        handler.send_response(302)
        handler.send_header("Location", f"{target}{separator}{urlencode(params)}")
        if cookie:
            handler.send_header("Set-Cookie", cookie)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _send(self, handler, status: int, body: str, content_type: str = "text/html; charset=utf-8", *,
              cors: bool = False, origin: str | None = None) -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Cache-Control", "no-store")
        if cors:
            handler.send_header("Access-Control-Allow-Origin", origin or "*")
            handler.send_header("Access-Control-Allow-Headers", "Content-Type")
            handler.send_header("Access-Control-Allow-Methods", "POST")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
