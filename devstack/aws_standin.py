"""moto server on loopback, provisioned like the stack: user pool, app client, users, secret, table.

Used by the functional tests and by the local stack. moto always issues tokens whose `iss` is the real AWS
URL, so the service is pointed at moto's JWKS through COGNITO_JWKS_URL while the issuer stays the real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import boto3

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


class MotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        import urllib.request

        # bandit B310: the URL is this process's own loopback moto server.
        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=5)  # nosec B310

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Environment:
    """Everything one deployment of the service needs, created in moto."""

    moto: MotoServer
    user_pool_id: str = ""
    client_id: str = ""
    secret_id: str = ""
    table_name: str = "stripe-portal-customers"
    users: dict[str, str] = field(default_factory=dict)  # username -> sub

    @property
    def jwks_url(self) -> str:
        return f"{self.moto.endpoint}/{self.user_pool_id}/.well-known/jwks.json"

    def service_env(self, *, stripe_api_base: str, return_url: str, **extra: str) -> dict[str, str]:
        env = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "STRIPE_SECRET_ID": self.secret_id,
            "STRIPE_MODE": "test",
            "STRIPE_API_BASE": stripe_api_base,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_CLIENT_IDS": self.client_id,
            "COGNITO_JWKS_URL": self.jwks_url,
            "CUSTOMERS_TABLE": self.table_name,
            "RETURN_URL": return_url,
            "POWERTOOLS_METRICS_NAMESPACE": "StripePortalGateway",
        }
        env.update(extra)
        return env

    def sign_in(self, username: str, password: str) -> dict[str, str]:
        """Real InitiateAuth against moto: returns IdToken / AccessToken signed by moto's RSA key."""
        result = self.moto.client("cognito-idp").initiate_auth(
            ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        return result["AuthenticationResult"]

    def add_user(self, username: str, password: str, *, email: str | None, email_verified: bool = True,
                 name: str | None = None) -> str:
        cognito = self.moto.client("cognito-idp")
        attributes = []
        if email:
            attributes += [{"Name": "email", "Value": email},
                           {"Name": "email_verified", "Value": "true" if email_verified else "false"}]
        if name:
            attributes.append({"Name": "name", "Value": name})
        cognito.admin_create_user(UserPoolId=self.user_pool_id, Username=username, UserAttributes=attributes,
                                  MessageAction="SUPPRESS")
        cognito.admin_set_user_password(UserPoolId=self.user_pool_id, Username=username, Password=password,
                                        Permanent=True)
        user = cognito.admin_get_user(UserPoolId=self.user_pool_id, Username=username)
        sub = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
        self.users[username] = sub
        return sub

    def put_stripe_key(self, value: str) -> None:
        """A new AWSCURRENT value, as PutSecretValue makes one in AWS. moto, after a stage move, leaves AWSCURRENT
        on the old version too; the label is moved here explicitly, as AWS moves it."""
        secrets = self.moto.client("secretsmanager")
        before = [v for v, stages in secrets.describe_secret(SecretId=self.secret_id).get(
            "VersionIdsToStages", {}).items() if "AWSCURRENT" in stages]
        new = secrets.put_secret_value(SecretId=self.secret_id, SecretString=value)["VersionId"]
        stages = secrets.describe_secret(SecretId=self.secret_id).get("VersionIdsToStages", {})
        for old in before:
            if old != new and "AWSCURRENT" in stages.get(old, []):
                secrets.update_secret_version_stage(SecretId=self.secret_id, VersionStage="AWSCURRENT",
                                                    MoveToVersionId=new, RemoveFromVersionId=old)


def table_definition() -> dict:
    """The customers table exactly as template.yaml declares it (key schema, billing mode, encryption)."""
    from devstack.cfn import load_template

    props = load_template()["Resources"]["CustomersTable"]["Properties"]
    definition = {key: props[key] for key in ("AttributeDefinitions", "KeySchema", "BillingMode")}
    definition["SSESpecification"] = {"Enabled": props["SSESpecification"]["SSEEnabled"]}  # CFN vs API spelling
    return definition


def provision(moto: MotoServer, *, stripe_key: str | None, pool_name: str = "portal-users",
              table_name: str = "stripe-portal-customers", callback_urls: tuple[str, ...] = ()) -> Environment:
    env = Environment(moto=moto, table_name=table_name)
    cognito = moto.client("cognito-idp")
    pool = cognito.create_user_pool(
        PoolName=pool_name,
        AutoVerifiedAttributes=["email"],
        Schema=[{"Name": "email", "AttributeDataType": "String", "Mutable": True, "Required": False}],
    )["UserPool"]
    env.user_pool_id = pool["Id"]
    env.client_id = cognito.create_user_pool_client(
        UserPoolId=env.user_pool_id, ClientName="static-site", GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        ReadAttributes=["email", "email_verified", "name"],
        AllowedOAuthFlows=["code"], AllowedOAuthScopes=["openid", "email"], AllowedOAuthFlowsUserPoolClient=True,
        CallbackURLs=list(callback_urls) or ["https://localhost/portal/callback"],
    )["UserPoolClient"]["ClientId"]
    secrets = moto.client("secretsmanager")
    created = secrets.create_secret(Name=f"{pool_name}/stripe-api-key",
                                    **({"SecretString": json.dumps({"api_key": stripe_key})} if stripe_key else {}))
    env.secret_id = created["ARN"]
    moto.client("dynamodb").create_table(TableName=table_name, **table_definition())
    return env


def add_oauth_secret(env: Environment, *, client_secret: str = "") -> str:
    """The OAuth secret as template.yaml's OAuthSecret generates it (its template, key name and length)."""
    import secrets
    import string

    from devstack.cfn import load_template

    spec = load_template()["Resources"]["OAuthSecret"]["Properties"]["GenerateSecretString"]
    alphabet = string.ascii_letters + string.digits  # ExcludePunctuation: true
    value = json.loads(spec["SecretStringTemplate"])
    value[spec["GenerateStringKey"]] = "".join(secrets.choice(alphabet) for _ in range(spec["PasswordLength"]))
    if client_secret:
        value["client_secret"] = client_secret
    return env.moto.client("secretsmanager").create_secret(
        Name=f"portal-{secrets.token_hex(4)}/oauth", SecretString=json.dumps(value))["ARN"]


def add_webhook_secret(env: Environment) -> str:
    """The webhook signing secret as template.yaml's WebhookSigningSecret creates it: no secret yet."""
    import secrets

    from devstack.cfn import load_template

    value = load_template()["Resources"]["WebhookSigningSecret"]["Properties"]["SecretString"]
    return env.moto.client("secretsmanager").create_secret(
        Name=f"portal-{secrets.token_hex(4)}/stripe-webhook", SecretString=value)["ARN"]
