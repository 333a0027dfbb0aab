from tests.functional.conftest import moto_server, stack, stripe_standin, user  # noqa: F401 - shared fixtures
