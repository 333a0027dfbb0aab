"""Browser tests: the local stack fixture (module-scoped: one stack per test module)."""

from tests.support.local_stack import local_stack  # noqa: F401 - fixture
