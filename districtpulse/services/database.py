"""The database `up` prepares: the project's database, and in secure mode the users allowed to use it.

Plain mode: `CREATE DATABASE` (idempotent in InfluxDB 1.x), no authentication.

Secure mode (InfluxDB runs with `auth-enabled`): with the passwords of `secure.InfluxSecrets`,
1. the first `up` creates `admin` (InfluxDB lets an unauthenticated client create the first admin only, and
   nothing else, as long as no admin exists);
2. every `up`, as admin: the database, then `writer` and `reader`, created or given their password from the
   files again (so a password file replaced by hand is what the database checks), and their privileges on the
   database granted: ALL to the writer, READ to the reader. Both have nothing on any other database.

Passwords travel in the body of a POST over loopback (never in a URL, which servers log) and appear in no
message: an InfluxQL error is reported with the statement's verb, not its text.
"""

from __future__ import annotations

import asyncio

from districtpulse.config import Endpoints
from districtpulse.services import secure as security
from districtpulse.services.layout import ServiceError
from storage.errors import SinkRefused, SinkRejected, StorageError
from storage.influx import InfluxConfig, InfluxV1
from storage.queries import ident, literal

NO_ADMIN_YET = "create admin user first"


def _influx(endpoints: Endpoints, user: str | None = None, password: str | None = None) -> InfluxV1:
    config = InfluxConfig(
        url=endpoints.influx_url, database=endpoints.influx_db, username=user, password=password, timeout=5.0
    )
    return InfluxV1(config)


def create_database(endpoints: Endpoints) -> None:
    """CREATE DATABASE is idempotent in InfluxDB 1.x: safe on every `up`."""

    async def create() -> None:
        async with _influx(endpoints) as influx:
            await influx.create_database()

    try:
        asyncio.run(create())
    except StorageError as exc:
        raise ServiceError(f"cannot create the database {endpoints.influx_db!r}: {exc}") from exc


async def _run(influx: InfluxV1, statement: str, verb: str) -> None:
    """One statement; an error names `verb` ("CREATE USER writer"), never the statement (a password)."""
    try:
        await influx.query(statement, database=influx.config.database)
    except SinkRejected as exc:
        raise ServiceError(f"InfluxDB refused {verb}: {exc.body[:200]}") from None


async def _admin_exists(endpoints: Endpoints, secrets: security.InfluxSecrets) -> bool:
    async with _influx(endpoints, security.INFLUX_ADMIN, secrets.password(security.INFLUX_ADMIN)) as influx:
        try:
            await influx.query("SHOW USERS")
        except SinkRefused as exc:
            if exc.status == 403 and NO_ADMIN_YET in exc.body:
                return False
            if exc.status == 401:
                raise ServiceError(
                    f"InfluxDB refuses the admin password in {secrets.password_file(security.INFLUX_ADMIN)}: its "
                    "data directory was set up with other credentials (restore that file, or start from an empty "
                    "InfluxDB state directory)"
                ) from None
            raise
    return True


async def _prepare_secure(endpoints: Endpoints, secrets: security.InfluxSecrets) -> list[str]:
    done: list[str] = []
    admin_password = secrets.password(security.INFLUX_ADMIN)
    if not await _admin_exists(endpoints, secrets):
        async with _influx(endpoints) as anonymous:
            await _run(
                anonymous,
                f"CREATE USER {ident(security.INFLUX_ADMIN)} WITH PASSWORD {literal(admin_password)} "
                "WITH ALL PRIVILEGES",
                f"CREATE USER {security.INFLUX_ADMIN}",
            )
        done.append(f"created the admin user {security.INFLUX_ADMIN!r}")
    database = endpoints.influx_db
    async with _influx(endpoints, security.INFLUX_ADMIN, admin_password) as admin:
        await _run(admin, f"CREATE DATABASE {ident(database)}", f"CREATE DATABASE {database}")
        existing = {row[0] for series in await admin.query("SHOW USERS") for row in series.get("values", [])}
        for user, privilege in security.INFLUX_GRANTS.items():
            password = literal(secrets.password(user))
            if user in existing:
                await _run(admin, f"SET PASSWORD FOR {ident(user)} = {password}", f"SET PASSWORD FOR {user}")
            else:
                await _run(admin, f"CREATE USER {ident(user)} WITH PASSWORD {password}", f"CREATE USER {user}")
                done.append(f"created the user {user!r}")
            await _run(admin, f"GRANT {privilege} ON {ident(database)} TO {ident(user)}", f"GRANT {privilege}")
    return done


def prepare_secure_database(endpoints: Endpoints, secrets: security.InfluxSecrets) -> list[str]:
    """Secure mode's users and database (see the module docstring); returns what it created, for the log."""
    try:
        return asyncio.run(_prepare_secure(endpoints, secrets))
    except StorageError as exc:
        raise ServiceError(f"cannot prepare InfluxDB's users and database {endpoints.influx_db!r}: {exc}") from exc
